"""Label search through the indexes (SQLite FTS5 trigram, PostgreSQL pg_trgm) and the
capped counts that keep the first page fast on very large teams."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.services import tokens
from bot.services import listing
from tests.support.policy import NO_POLICY

TEAM = "TSEARCH"


def _make(db, settings, now, labels):
    actor = tokens.Actor(team_id=TEAM, user_id="U1")
    ids = []
    with db.sessions.begin() as session:
        for n, label in enumerate(labels):
            created = tokens.create_token(
                session, box=db.box, actor=actor, label=label, scope="read",
                scopes=settings.tokenbot_scopes, now=now + dt.timedelta(seconds=n),
                policy=NO_POLICY,
            )
            ids.append(created.token.public_id)
    return ids


def _labels(db, now, search, **kwargs):
    with db.sessions.begin() as session:
        page = listing.list_tokens(session, team_id=TEAM, now=now,
                                   filters=listing.TokenFilter(search=search), **kwargs,
                                   policy=NO_POLICY)
        return [t.label for t in page.items], page


@pytest.mark.parametrize("selective_limit", [2_000, 0], ids=["trigram-index", "ordered-walk"])
def test_search_is_literal_substring_on_both_paths(db, settings, now, monkeypatch, selective_limit):
    monkeypatch.setattr(listing, "FTS_SELECTIVE", selective_limit)
    _make(db, settings, now, [
        'say "hello" world', "it's 100% done", "under_score", "underXscore",
        "Deploy Prod", "deploy staging", "nothing",
    ])
    assert _labels(db, now, '"hello"')[0] == ['say "hello" world']
    assert _labels(db, now, "100%")[0] == ["it's 100% done"]
    assert _labels(db, now, "'s 1")[0] == ["it's 100% done"]
    assert _labels(db, now, "der_sc")[0] == ["under_score"]
    assert _labels(db, now, "DEPLOY")[0] == ["deploy staging", "Deploy Prod"]
    assert _labels(db, now, "de")[0] == ["deploy staging", "Deploy Prod", "underXscore", "under_score"]
    assert _labels(db, now, "zzz")[0] == []


def test_search_follows_renames_and_deletes(db, settings, now):
    [first, second] = _make(db, settings, now, ["alpha build", "beta build"])
    admin = tokens.Actor(team_id=TEAM, user_id="UADMIN", is_admin=True)
    with db.sessions.begin() as session:
        tokens.edit_token(session, actor=admin, public_id=first, expected_version=1,
                          scopes=settings.tokenbot_scopes, now=now, label="gamma release",
                          policy=NO_POLICY)
        tokens.delete_token(session, actor=admin, public_id=second, expected_version=1, now=now)
    assert _labels(db, now, "build")[0] == []
    assert _labels(db, now, "alpha")[0] == []
    assert _labels(db, now, "gamma")[0] == ["gamma release"]


def test_count_is_exact_up_to_the_cap_then_says_more(db, settings, now, monkeypatch):
    monkeypatch.setattr(listing, "COUNT_CAP", 5)
    _make(db, settings, now, [f"token {n}" for n in range(7)])
    with db.sessions.begin() as session:
        page = listing.list_tokens(session, team_id=TEAM, now=now, per_page=2, policy=NO_POLICY)
        assert (page.total, page.total_exact, page.pages, page.has_next) == (5, False, 3, True)
        # Past the counted pages the list still pages on, newest first.
        last = listing.list_tokens(session, team_id=TEAM, now=now, per_page=2, page=4,
            policy=NO_POLICY)
        assert [t.label for t in last.items] == ["token 0"]
        assert (last.page, last.has_next) == (4, False)
    monkeypatch.setattr(listing, "COUNT_CAP", 7)
    with db.sessions.begin() as session:
        page = listing.list_tokens(session, team_id=TEAM, now=now, per_page=2, page=99,
            policy=NO_POLICY)
        assert (page.total, page.total_exact, page.page, page.has_next) == (7, True, 4, False)
        assert [t.label for t in page.items] == ["token 0"]


def test_search_count_stops_at_the_cap_too(db, settings, now, monkeypatch):
    monkeypatch.setattr(listing, "COUNT_CAP", 3)
    _make(db, settings, now, [f"ci runner {n}" for n in range(5)] + ["other"])
    labels, page = _labels(db, now, "runner", per_page=10)
    assert len(labels) == 5
    assert (page.total, page.total_exact) == (3, False)
    labels, page = _labels(db, now, "other")
    assert (labels, page.total, page.total_exact) == (["other"], 1, True)


def test_search_folds_case_as_casefold_does(db, settings, now):
    _make(db, settings, now, ["İstanbul mirror", "Straße sync", "ÉCOLE deploy", "ecole"])
    assert _labels(db, now, "ist")[0] == ["İstanbul mirror"]
    assert _labels(db, now, "STRASSE")[0] == ["Straße sync"]
    assert _labels(db, now, "éco")[0] == ["ÉCOLE deploy"]  # accents still count
