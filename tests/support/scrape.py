"""Scraping ``GET /metrics`` as Prometheus does, and what moved between two scrapes."""

from __future__ import annotations

import http.client

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(address: tuple[str, int], headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("GET", "/metrics", headers=headers or {})
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read().decode("utf-8"))
    finally:
        connection.close()


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(address: tuple[str, int], headers: dict[str, str] | None = None) -> Samples:
    status, _, text = get(address, headers)
    assert status == 200, text
    return parse(text)


def moved(before: Samples, after: Samples, name: str) -> dict[tuple[str, ...], float]:
    """How much each series of ``name`` grew: label values (sorted by label name) -> delta;
    series that did not move are left out."""
    grown: dict[tuple[str, ...], float] = {}
    for (sample, labels), value in after.items():
        delta = value - before.get((sample, labels), 0.0)
        if sample == name and delta:
            grown[tuple(v for _, v in sorted(labels))] = delta
    return grown


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
