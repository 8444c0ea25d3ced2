"""Thin Slack listeners: parse the payload, call a service, draw a view. Each module
registers its own listeners and its error surface (``register(app)``, through
``bot.slack.acks``); ``bot.slack.app`` calls each module's ``register``."""
