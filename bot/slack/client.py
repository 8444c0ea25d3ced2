"""The Slack Web API client: configurable base URL, slack_sdk's retry handlers, and a
first handler that retries nothing and counts every try (``tokenbot_slack_api_calls``)."""

from __future__ import annotations

import copy
import logging

from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot import metrics
from bot.config import Settings


class CountCalls(RetryHandler):
    """slack_sdk asks its retry handlers about every answer (and every failure to get
    one), in order: first in the list, this one counts each try by method and outcome
    (ok, ratelimited, error) and lets the next handlers decide."""

    def can_retry(self, *, state: RetryState, request: HttpRequest,
                  response: HttpResponse | None = None,
                  error: Exception | None = None) -> bool:
        metrics.slack_api_call(request.url.rsplit("/", 1)[-1].split("?", 1)[0],
                               _outcome(response))
        return False


def _outcome(response: HttpResponse | None) -> str:
    if response is None:
        return "error"
    body = response.body if isinstance(response.body, dict) else {}
    if response.status_code == 429 or body.get("error") == "ratelimited":
        return "ratelimited"
    return "ok" if response.status_code == 200 and body.get("ok") is True else "error"


_COUNT_CALLS = CountCalls()


def make_web_client(settings: Settings, *, max_retry_count: int = 2, timeout: int = 10,
                    logger: logging.Logger | None = None) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    return WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        logger=logger,
        retry_handlers=[
            _COUNT_CALLS,
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


class _ShortRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Retries a 429 only when its ``Retry-After`` is at most ``max_wait`` seconds (a
    longer one is left to the caller: the post is refused for now)."""

    def __init__(self, *, max_retry_count: int, max_wait: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        headers = {name.lower(): values for name, values in response.headers.items()}
        wait = (headers.get("retry-after") or ["1"])[0]
        return wait.isdigit() and int(wait) <= self.max_wait


def without_blind_retries(
    client: WebClient, *, timeout: int, max_retry_after: int, max_retry_count: int = 2
) -> WebClient:
    """``client`` (same token, URL, proxy, logger…) for a call that must not be repeated
    blindly (a post) and must end in bounded time: each try waits at most ``timeout``
    seconds, and it retries only what Slack certainly did not act on, a refused
    connection and a 429 whose ``Retry-After`` is at most ``max_retry_after``. A timeout,
    a dropped connection or a 5xx after the request left may have been acted on: the
    caller settles those (bot/outbox/delivery.py)."""
    poster = copy.copy(client)
    poster.timeout = min(client.timeout, timeout)
    poster.retry_handlers = [
        _COUNT_CALLS,
        _RefusedConnectionRetryHandler(max_retry_count=max_retry_count),
        _ShortRateLimitRetryHandler(max_retry_count=max_retry_count, max_wait=max_retry_after),
    ]
    return poster
