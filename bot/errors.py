"""Domain exceptions. Each carries a message fit to show a user as it is."""

from __future__ import annotations


class TokenbotError(Exception):
    """Base class: ``str(error)`` is the user-facing message (none given: ``DEFAULT``)."""

    DEFAULT = ""

    def __init__(self, message: str | None = None) -> None:
        self.message = self.DEFAULT if message is None else message
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigurationError(TokenbotError):
    """The deployment is misconfigured (a setting, the keys, the database); the message
    names what to fix."""


class ValidationError(TokenbotError):
    """User input broke a rule. ``field`` names the input (label, scope, expires)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class PastExpiryError(ValidationError):
    """An expiry date that is not later than today (UTC)."""

    def __init__(self) -> None:
        super().__init__("The expiry date must be in the future (after today, UTC).",
                         field="expires")


class NotFoundError(TokenbotError):
    """No such token in this workspace (also what another team's id looks like)."""

    DEFAULT = "That token was not found. It may have been deleted."


class PermissionDeniedError(TokenbotError):
    """The actor may not do this. ``field`` names the input at fault, if one is (scope)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotOwnerError(PermissionDeniedError):
    """Only the token's owner or an admin may do this. ``owner`` is the owner's user id;
    each surface shows it its own way (a Slack mention, a plain id at the shell)."""

    TEXT = "Only the token's owner ({owner}) or a workspace admin can {verb} it."

    def __init__(self, *, owner: str, verb: str) -> None:
        super().__init__(self.TEXT.format(owner=owner, verb=verb))
        self.owner = owner
        self.verb = verb

    def naming(self, owner: str) -> str:
        """The message with the owner shown as ``owner``."""
        return self.TEXT.format(owner=owner, verb=self.verb)


class StaleTokenError(TokenbotError):
    """The token changed since the user's view was drawn."""

    DEFAULT = ("This token changed since you looked (someone else edited, disabled or "
               "deleted it). Nothing was changed; here is the current state.")


class InvalidStateError(TokenbotError):
    """The action does not fit the token's state (edit a disabled token, disable twice)."""
