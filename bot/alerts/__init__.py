"""The expiry-alert scheduler (:mod:`bot.alerts.scheduler`): one pass and its schedule.
Each message goes out exactly once through :mod:`bot.alerts.delivery`, destinations side
by side through :mod:`bot.alerts.dispatch`. The database side is
:mod:`bot.services.alerts`; the digest messages are drawn by :mod:`bot.slack.views.digests`."""
