"""From alert records to digest items: which claimed alerts still go out (one per token
per destination, nearest threshold), and how a posted digest looks when redrawn."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.alerts.service import ActedAction, SkipReason, skip_reason
from bot.models import Alert, Token, TokenStatus
from bot.views.alerts import DigestItem, Outcome


@dataclass
class Selection:
    """Claimed alerts split into those to post and those to close without posting."""

    post: list[tuple[Alert, Token]] = field(default_factory=list)
    skip: dict[int, str] = field(default_factory=dict)


def select_for_posting(
    rows: Sequence[tuple[Alert, Token | None]], *, now: dt.datetime, alert_days: Sequence[int]
) -> Selection:
    selection = Selection()
    best: dict[int, tuple[Alert, Token]] = {}
    for alert, token in rows:
        reason = skip_reason(alert, token, now=now, alert_days=alert_days)
        if reason is not None or token is None:
            selection.skip[alert.id] = reason or SkipReason.DELETED
            continue
        kept = best.get(token.id)
        if kept is None:
            best[token.id] = (alert, token)
        elif alert.threshold_days < kept[0].threshold_days:
            selection.skip[kept[0].id] = SkipReason.SUPERSEDED
            best[token.id] = (alert, token)
        else:
            selection.skip[alert.id] = SkipReason.SUPERSEDED
    selection.post = list(best.values())
    return selection


def item_for(alert: Alert, token: Token) -> DigestItem:
    """How a token looks in a digest as it goes out."""
    return DigestItem(
        public_id=token.public_id,
        version=token.version,
        label=token.label,
        masked=token.secret_masked,
        scope=token.scope,
        owner=token.created_by,
        expires_at=alert.expires_at,
        threshold_days=alert.threshold_days,
    )


_ACTED = {
    ActedAction.EXTENDED: Outcome.EXTENDED,
    ActedAction.EDITED: Outcome.EDITED,
    ActedAction.DISABLED: Outcome.DISABLED,
}


def redraw_item(alert: Alert, token: Token | None) -> DigestItem | None:
    """How a posted token looks when its digest is redrawn: what was done from the message
    and by whom, or what became of it elsewhere (disabled, re-dated)."""
    if token is None:  # deleted: its alerts went with it (ON DELETE CASCADE)
        return None
    item = item_for(alert, token)
    outcome: Outcome | None = _ACTED.get(alert.acted_action or "")
    by = alert.acted_by if outcome is not None else None
    if outcome is None and token.status == TokenStatus.DISABLED:
        outcome = Outcome.DISABLED
    if outcome is None and token.expires_at != alert.expires_at:
        outcome = Outcome.EDITED
    return DigestItem(
        **{
            **item.__dict__,
            "outcome": outcome,
            "outcome_by": by,
            "current_expires_at": token.expires_at,
        }
    )
