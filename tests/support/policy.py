"""``NO_POLICY``: the hygiene policy of a team that sets none (no lifetime cap), built as
the app builds every policy, from settings (their defaults), for tests whose point is not
the policy. The services take the policy as a required argument, so a caller that forgets
it fails loudly instead of silently skipping the cap."""

from __future__ import annotations

from typing import Final

from bot.config import Settings
from bot.services.policy import Policy, policy_of

NO_POLICY: Final[Policy] = policy_of(Settings.model_construct())
