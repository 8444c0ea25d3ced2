"""Everything Slack-facing: the Bolt app, its ids, state, views and listeners."""
