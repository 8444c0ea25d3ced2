"""The Slack Web API client: configurable base URL and slack_sdk's retry handlers."""

from __future__ import annotations

from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.config import Settings


def make_web_client(settings: Settings, *, max_retry_count: int = 2, timeout: int = 10) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=max_retry_count),
            RateLimitErrorRetryHandler(max_retry_count=max_retry_count),
            ServerErrorRetryHandler(max_retry_count=max_retry_count),
        ],
    )


class _RefusedConnectionRetryHandler(ConnectionErrorRetryHandler):
    """Retries a connection that was refused: the request never reached Slack."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        reason = error.reason if isinstance(error, URLError) else error
        return response is None and isinstance(reason, ConnectionRefusedError)


def without_blind_retries(client: WebClient, *, max_retry_count: int = 2) -> WebClient:
    """A copy of ``client`` for a call that must not be repeated blindly (a post): it
    retries only what Slack certainly did not act on, a 429 and a refused connection. A
    timeout, a dropped connection or a 5xx after the request left may have been acted on:
    the caller resolves those (bot/alerts/delivery.py)."""
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        headers=client.headers,
        retry_handlers=[
            _RefusedConnectionRetryHandler(max_retry_count=max_retry_count),
            RateLimitErrorRetryHandler(max_retry_count=max_retry_count),
        ],
    )
