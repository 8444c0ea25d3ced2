"""Thin Slack listeners: parse the payload, call a service, draw a view.

Callbacks are plain functions. ``bot.slack.app`` registers them all: the command, the
modal submissions and the Home event by name, every button and menu through its entry in
``bot.slack.actions`` (a listener marks the actions it handles with ``@listener``).
``bot.slack.acks`` acknowledges each request before its listener runs, so a listener of a
command, a click or an event takes no ``ack``; a submission's listener acknowledges itself
and returns what to draw afterwards.
"""
