"""Thin Slack listeners: parse the payload, call a service, draw a view.

Each module registers its listeners with ``register(app)``; callbacks are plain functions.
"""
