"""Services: the registry's rules as plain functions (no Slack, no commits)."""
