"""Tokenbot: a Slack app through which a team issues and manages its access tokens."""
