"""The expiry-alert scheduler (:mod:`bot.alerts.scheduler`): one pass and its schedule.
The database side is :mod:`bot.services.alerts`; the digest messages are drawn by
:mod:`bot.slack.views.digests`."""
