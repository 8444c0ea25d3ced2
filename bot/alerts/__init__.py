"""Expiry alerts: reminders before a token expires (and when it has), posted once each.

- :mod:`bot.alerts.service`: the database side (arm, claim, mark sent / failed / skipped,
  the actions offered by a digest). No Slack.
- :mod:`bot.alerts.digest`: which claimed alerts go out, grouped into digest messages.
- :mod:`bot.alerts.scheduler`: one pass (:func:`run_pass`) and the APScheduler job.
"""
