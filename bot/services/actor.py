"""Who acts on the registry: a Slack user of a team, or an operator at the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from bot.models import AuditSource

#: Who the CLI acts as without ``--as`` (the audit log's actor of source ``cli``).
CLI_OPERATOR = "operator"


@dataclass(frozen=True)
class Actor:
    team_id: str
    user_id: str
    is_admin: bool = False
    source: AuditSource = AuditSource.SLACK

    def may_manage(self, owner: str) -> bool:
        """Owners manage their own tokens; admins manage every token of their team."""
        return self.is_admin or owner == self.user_id
