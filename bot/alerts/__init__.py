"""The scheduled pass (:mod:`bot.alerts.scheduler`): what becomes due is queued in the
outbox, then the outbox is delivered (:mod:`bot.outbox`)."""
