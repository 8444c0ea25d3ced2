"""The operator CLI, run in-process through ``bot.cli.main`` on SQLite and PostgreSQL, plus
one run of the installed ``tokenbot`` script on the embedded default database."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import stat
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
import time_machine
from cryptography.fernet import Fernet

from bot import cli
from bot.crypto import generate_key
from bot.db import Database
from bot.services import tokens
from bot.texts import (
    CONFIRMATIONS,
    DISABLE_VS_DELETE,
    DISABLE_VS_DELETE_TITLE,
    ROTATE_OVERLAP_LINES,
    ROTATION_IN_PROGRESS_NOTE,
    SECURITY_NOTE,
    Lifecycle,
)
from tests.support.policy import NO_POLICY

SECRET_RE = re.compile(r"tkb_[0-9A-Za-z]{40}")
ROW_FIELDS = {
    "id", "label", "masked", "scope", "status",
    "created_at", "created_by", "owner", "expires_at", "expires_on", "last_used_at",
    "last_used_by", "rotation", "policy_exception", "over_policy",
}
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


class TTYInput(io.StringIO):
    """What a person at a terminal types."""

    def isatty(self) -> bool:
        return True


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: io.StringIO | None = None) -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", stdin if stdin is not None else io.StringIO(""))
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str, stdin: io.StringIO | None = None) -> Result:
        result = self(*argv, stdin=stdin)
        assert result.code == 0, result.err
        return result

    def create(self, label: str = "ci deploy", *extra: str, owner: str = "U1") -> dict:
        result = self.ok("tokens", "create", "--label", label, "--scope", "read",
                         "--owner", owner, "--json", *extra)
        return result.json()  # type: ignore[return-value]

    def show(self, token_id: str, *extra: str) -> dict:
        return self.ok("tokens", "show", token_id, "--json", *extra).json()  # type: ignore


@pytest.fixture
def env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI reads its settings from the environment: the test database, a key, team T1."""
    key = generate_key()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", key)
    monkeypatch.setenv("TOKENBOT_TEAM_ID", "T1")
    return key


@pytest.fixture
def run(env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def _audit(run: Cli, *extra: str) -> list[dict]:
    return run.ok("audit", "--json", *extra).json()  # type: ignore[return-value]


def _later(days: int) -> str:
    return (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=days)).isoformat()


# -- create / list / show -------------------------------------------------------------


def test_create_prints_the_secret_once_and_list_shows_only_the_masked_form(run: Cli) -> None:
    created = run.ok("tokens", "create", "--label", "CI deploy", "--scope", "write",
                     "--owner", "U1", "--expires", _later(30))
    secrets_shown = SECRET_RE.findall(created.out)
    assert len(secrets_shown) == 1
    secret = secrets_shown[0]
    assert SECURITY_NOTE in created.out
    token_id = re.search(r"tok_[a-z0-9]+", created.out).group(0)  # type: ignore[union-attr]

    listed = run.ok("tokens", "list")
    assert secret not in listed.out
    assert SECRET_RE.search(listed.out) is None
    header, row, footer = listed.out.strip().splitlines()
    assert header.split() == ["ID", "LABEL", "TOKEN", "SCOPE", "STATUS", "OWNER", "CREATED",
                              "EXPIRES", "LAST", "USED"]
    assert row.startswith(token_id)
    assert secret[:10] + "…" in row
    assert "CI deploy" in row and "write" in row and "active" in row and _later(30) in row
    # aligned: every column starts at the same offset in the header and the row
    assert row.index(secret[:10]) == header.index("TOKEN")
    assert row.index(_later(30)) == header.index("EXPIRES")
    assert footer == "page 1 of 1, 1 token"

    shown = run.ok("tokens", "show", token_id)
    assert secret not in shown.out and secret[:10] + "…" in shown.out

    # the real secret was stored: the audited reveal gives it back
    assert run.ok("tokens", "reveal", token_id).out.strip() == secret


def test_json_rows_carry_exactly_the_documented_fields(run: Cli) -> None:
    created = run.create("nightly", "--expires", _later(10), owner="UOWNER")
    assert set(created) == ROW_FIELDS | {"secret"}
    assert SECRET_RE.fullmatch(created["secret"])
    assert created["masked"] == created["secret"][:10] + "…"
    # the owner is who answers for it; the creator is the operator who ran the command
    assert (created["owner"], created["created_by"]) == ("UOWNER", "operator")
    assert created["status"] == "active"
    assert ISO_UTC.match(created["created_at"])
    assert created["expires_at"] == f"{_later(10)}T00:00:00Z"
    assert created["last_used_at"] is None

    listed = run.ok("tokens", "list", "--json").json()
    assert listed["total"] == 1 and listed["page"] == 1 and listed["pages"] == 1
    (row,) = listed["tokens"]
    assert set(row) == ROW_FIELDS
    assert row == {k: v for k, v in created.items() if k != "secret"}
    assert run.show(created["id"]) == row
    assert created["secret"] not in json.dumps(listed)

    # the owner is the token's owner; the audit names the operator, source cli
    (event,) = _audit(run)
    assert event["action"] == "create" and event["token_id"] == created["id"]
    assert event["actor"] == "operator" and event["source"] == "cli"
    assert created["secret"] not in json.dumps(event)


@pytest.mark.parametrize("page", ["100000000000000000000", "0", "-3", "x"])
def test_an_out_of_range_page_is_one_line_and_changes_nothing(run: Cli, page: str) -> None:
    result = run("tokens", "list", "--page", page)
    assert result.code == 2
    assert "--page" in result.err and "whole number" in result.err


def test_list_expiring_is_the_slack_filter(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--status expiring`: active and expiring within the largest TOKENBOT_ALERT_DAYS, as
    `/tokens expiring` (the same service filter)."""
    soon = run.create("soon", "--expires", _later(10))
    later = run.create("later", "--expires", _later(40))
    run.create("never")
    paused = run.create("paused", "--expires", _later(5))
    run.ok("tokens", "disable", paused["id"], "--yes")

    def ids() -> set[str]:
        listed = run.ok("tokens", "list", "--status", "expiring", "--json").json()
        return {row["id"] for row in listed["tokens"]}

    assert ids() == {soon["id"]}  # default thresholds 30, 7, 1
    monkeypatch.setenv("TOKENBOT_ALERT_DAYS", "60,7")
    assert ids() == {soon["id"], later["id"]}
    table = run.ok("tokens", "list", "--status", "expiring").out
    assert f"{_later(10)} (in 10 days)" in table and f"{_later(40)} (in 40 days)" in table


def test_list_filters_and_pages(run: Cli) -> None:
    mine = run.create("deploy 50%_off", owner="UA")
    other = run.create("deploy 50 off", owner="UB")
    expiring = run.create("short lived", "--expires", _later(1), owner="UA")
    disabled = run.create("old one", owner="UB")
    run.ok("tokens", "disable", disabled["id"], "--yes")

    def ids(*extra: str) -> set[str]:
        return {row["id"] for row in run.ok("tokens", "list", "--json", *extra).json()["tokens"]}

    everything = {mine["id"], other["id"], expiring["id"], disabled["id"]}
    assert ids() == everything
    assert ids("--status", "disabled") == {disabled["id"]}
    assert ids("--status", "active") == {mine["id"], other["id"], expiring["id"]}
    assert ids("--status", "expired") == set()
    assert ids("--owner", "UA") == {mine["id"], expiring["id"]}
    assert ids("--search", "50%_") == {mine["id"]}  # % and _ matched literally
    assert ids("--search", "DEPLOY") == {mine["id"], other["id"]}
    assert ids("--owner", "UB", "--status", "active") == {other["id"]}

    two_days_on = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    with time_machine.travel(two_days_on, tick=False):
        assert ids("--status", "expired") == {expiring["id"]}
        assert run.show(expiring["id"])["status"] == "expired"
        table = run.ok("tokens", "list", "--status", "expired").out
        assert "expired" in table.splitlines()[1]

    first = run.ok("tokens", "list", "--json", "--per-page", "3").json()
    second = run.ok("tokens", "list", "--json", "--per-page", "3", "--page", "2").json()
    assert (first["pages"], first["total"], len(first["tokens"])) == (2, 4, 3)
    assert {r["id"] for r in first["tokens"] + second["tokens"]} == everything
    assert run.ok("tokens", "list", "--per-page", "3", "--page", "2").out.strip().endswith(
        "page 2 of 2, 4 tokens"
    )
    assert "No tokens match." in run.ok("tokens", "list", "--search", "nothing like it").out


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes (wide East Asian characters take two)."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def test_the_table_stays_aligned_with_wide_characters_and_long_labels_are_cut(
    run: Cli,
) -> None:
    run.create("x" * 100)
    run.create("café ✓")
    run.create("新しいラベル")
    lines = run.ok("tokens", "list").out.splitlines()
    scope_at = _columns(lines[0][: lines[0].index("SCOPE")])
    for line in lines[1:4]:
        assert _columns(line[: line.index("  read ") + 2]) == scope_at, line
    assert "x" * 100 not in "\n".join(lines)
    assert any(re.search(r"\bx{30,}…", line) for line in lines)


# -- edit -----------------------------------------------------------------------------


def test_edit_changes_label_scope_and_expiry_and_is_audited(run: Cli) -> None:
    token = run.create("before", "--expires", _later(5))
    out = run.ok("tokens", "edit", token["id"], "--label", "after", "--scope", "write",
                 "--expires", _later(60)).out
    assert "before → after" in out and "read → write" in out
    shown = run.show(token["id"])
    assert (shown["label"], shown["scope"], shown["expires_at"]) == (
        "after", "write", f"{_later(60)}T00:00:00Z"
    )
    run.ok("tokens", "edit", token["id"], "--no-expiry")
    assert run.show(token["id"])["expires_at"] is None
    assert "never" in run.ok("tokens", "show", token["id"]).out

    edits = [e for e in _audit(run, "--token", token["id"]) if e["action"] == "edit"]
    assert len(edits) == 2
    assert edits[1]["details"]["before"]["label"] == "before"
    assert edits[1]["details"]["after"]["label"] == "after"
    table = run.ok("audit", "--token", token["id"]).out
    assert "label: before → after" in table

    nothing = run("tokens", "edit", token["id"])
    assert nothing.code != 0 and "Nothing to change" in nothing.err


def test_edit_refuses_bad_values_and_changes_nothing(run: Cli) -> None:
    token = run.create("keep me")
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    past = run("tokens", "edit", token["id"], "--expires", today)
    assert past.code == 1 and "future" in past.err and past.out == ""
    bad_scope = run("tokens", "edit", token["id"], "--scope", "root")
    assert bad_scope.code == 1 and "read, write, admin" in bad_scope.err
    blank = run("tokens", "edit", token["id"], "--label", "   ")
    assert blank.code == 1 and "label" in blank.err
    not_a_date = run("tokens", "edit", token["id"], "--expires", "31/01/2027")
    assert not_a_date.code == 2 and "YYYY-MM-DD" in not_a_date.err
    not_a_day = run("tokens", "create", "--label", "x", "--scope", "read", "--owner", "U1",
                    "--expires", "2027-02-30")
    assert not_a_day.code == 2 and "YYYY-MM-DD" in not_a_day.err
    both = run("tokens", "edit", token["id"], "--expires", _later(3), "--no-expiry")
    assert both.code == 2
    assert run.show(token["id"]) == {k: v for k, v in token.items() if k != "secret"}
    assert [e["action"] for e in _audit(run)] == ["create"]


# -- lifecycle ------------------------------------------------------------------------


def test_lifecycle_commands_with_yes(run: Cli) -> None:
    token = run.create("lifecycle")
    tid = token["id"]

    out = run.ok("tokens", "disable", tid, "--yes").out
    assert "Disabled" in out
    assert run.show(tid)["status"] == "disabled"
    assert "disabled" in run.ok("tokens", "list").out.splitlines()[1]

    run.ok("tokens", "enable", tid, "--yes")
    assert run.show(tid)["status"] == "active"

    rotated = run.ok("tokens", "rotate", tid, "--yes")
    (new_secret,) = SECRET_RE.findall(rotated.out)
    assert new_secret != token["secret"]
    assert SECURITY_NOTE in rotated.out
    assert run.show(tid)["masked"] == new_secret[:10] + "…"
    assert run.ok("tokens", "reveal", tid).out.strip() == new_secret
    rotated_json = run.ok("tokens", "rotate", tid, "--yes", "--json").json()
    assert set(rotated_json) == ROW_FIELDS | {"secret"}  # type: ignore[arg-type]

    run.ok("tokens", "delete", tid, "--yes")
    gone = run("tokens", "show", tid)
    assert gone.code == 1 and "not found" in gone.err

    actions = [e["action"] for e in reversed(_audit(run, "--token", tid))]
    assert actions == ["create", "disable", "enable", "rotate", "reveal", "rotate", "delete"]
    assert token["secret"] not in run.ok("audit").out


def test_the_rotate_prompt_says_what_an_overlap_keeps_and_what_a_rotation_in_progress_loses(
    run: Cli,
) -> None:
    token = run.create("overlapping")
    tid, first_masked = token["id"], token["masked"]
    asked = run("tokens", "rotate", tid, "--overlap", "24h", stdin=TTYInput("n\n"))
    assert asked.code != 0 and run.show(tid)["masked"] == first_masked
    for line in ROTATE_OVERLAP_LINES:
        assert f"  - {line}" in asked.err
    assert "stops working immediately" not in asked.err
    assert ROTATION_IN_PROGRESS_NOTE not in asked.err
    assert run("tokens", "rotate", tid, "--overlap", "24h", stdin=TTYInput("y\n")).code == 0
    # rotating again while the first rotation keeps the first secret working
    again = run("tokens", "rotate", tid, stdin=TTYInput("n\n"))
    assert f"  - {ROTATION_IN_PROGRESS_NOTE} ({first_masked})" in again.err
    assert CONFIRMATIONS[Lifecycle.ROTATE].lines[0] in again.err  # immediately, as asked


@pytest.mark.parametrize("action", ["disable", "enable", "delete", "rotate"])
def test_confirmation_prompt_shows_the_warning_and_only_yes_proceeds(
    run: Cli, action: str
) -> None:
    token = run.create("confirm me")
    tid = token["id"]
    if action == "enable":
        run.ok("tokens", "disable", tid, "--yes")
    before = run.show(tid)
    events_before = len(_audit(run))
    text = CONFIRMATIONS[Lifecycle(action)]

    for answer in ["n\n", "\n", "yess\n", ""]:
        refused = run("tokens", action, tid, stdin=TTYInput(answer))
        assert refused.code != 0
        assert f"{text.verb} this token? {tid}" in refused.err
        for warning in text.lines:
            assert f"  - {warning}" in refused.err
        assert f"{text.confirm}? [y/N]" in refused.err
        assert "not changed" in refused.err
        assert run.show(tid) == before
        assert len(_audit(run)) == events_before

    done = run("tokens", action, tid, stdin=TTYInput("YES\n"))
    assert done.code == 0, done.err
    if action == "delete":
        assert run("tokens", "show", tid).code == 1
    else:
        after = run.show(tid)
        assert after != before
        if action == "rotate":
            assert SECRET_RE.search(done.out)
            assert after["masked"] != before["masked"]
        else:
            assert after["status"] == {"disable": "disabled", "enable": "active"}[action]
    assert _audit(run)[0]["action"] == action


def test_warning_texts_are_the_guides(run: Cli) -> None:
    token = run.create("wording")
    shown = run("tokens", "delete", token["id"], stdin=TTYInput("n\n")).err
    assert "This action cannot be undone." in shown
    assert "Any processes using this token will immediately stop working." in shown
    assert "CI/CD pipelines, automation scripts, and integrations will fail." in shown
    assert "disable the token instead" in shown
    shown = run("tokens", "disable", token["id"], stdin=TTYInput("n\n")).err
    assert "Any processes using this token will immediately lose access." in shown
    assert "CI/CD pipelines and integrations will fail to authenticate." in shown
    assert "This action can be reversed by enabling the token." in shown


def test_help_says_when_to_disable_and_when_to_delete(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for action in ("disable", "delete"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["tokens", action, "--help"])
        assert exited.value.code == 0
        shown = capsys.readouterr().out
        assert f"{DISABLE_VS_DELETE_TITLE}:" in shown
        for line in DISABLE_VS_DELETE:
            assert f"  - {line}" in shown, (action, line)


def test_without_yes_and_without_a_terminal_the_cli_refuses(run: Cli) -> None:
    token = run.create("scripted")
    result = run("tokens", "disable", token["id"], stdin=io.StringIO("y\n"))
    assert result.code != 0
    assert "--yes" in result.err and "not a terminal" in result.err
    assert run.show(token["id"])["status"] == "active"


def test_a_token_changed_while_the_operator_was_asked_is_not_overwritten(
    run: Cli, make_settings, env: str
) -> None:
    token = run.create("contested")

    class SomeoneElseEditsFirst(TTYInput):
        def readline(self, *args: object) -> str:
            database = Database(make_settings(TOKENBOT_SECRET_KEYS=env), auto_upgrade=False)
            try:
                with database.sessions.begin() as session:
                    seen = tokens.get_token(session, team_id="T1", public_id=token["id"])
                    tokens.edit_token(
                        session, actor=tokens.Actor(team_id="T1", user_id="U1"),
                        public_id=token["id"], expected_version=seen.version,
                        scopes=["read", "write", "admin"],
                        now=dt.datetime.now(dt.timezone.utc), label="renamed meanwhile",
                        policy=NO_POLICY,
                    )
            finally:
                database.dispose()
            return "y\n"

    result = run("tokens", "disable", token["id"], stdin=SomeoneElseEditsFirst())
    assert result.code == 1
    assert "changed since you looked" in result.err
    shown = run.show(token["id"])
    assert (shown["status"], shown["label"]) == ("active", "renamed meanwhile")


def test_refusals_go_to_stderr_with_a_nonzero_exit(run: Cli, monkeypatch) -> None:
    token = run.create("refuse")
    tid = token["id"]
    run.ok("tokens", "disable", tid, "--yes")

    cases = {
        ("tokens", "disable", tid, "--yes"): "already disabled",
        ("tokens", "edit", tid, "--label", "new"): "disabled token cannot be edited",
        ("tokens", "delete", tid, "--yes"): "disabled token cannot be deleted",
        ("tokens", "show", "tok_doesnotexist"): "not found",
        ("tokens", "rotate", "tok_doesnotexist", "--yes"): "not found",
        ("tokens", "reveal", "tok_doesnotexist"): "not found",
    }
    for argv, message in cases.items():
        result = run(*argv)
        assert result.code == 1, argv
        assert message in result.err, (argv, result.err)
        assert result.out == ""
    # refused before asking: no question for an action that cannot happen
    asked = run("tokens", "disable", tid, stdin=TTYInput("y\n"))
    assert asked.code == 1 and "already disabled" in asked.err and "[y/N]" not in asked.err

    # another team's token behaves as unknown, for every command
    run.ok("tokens", "enable", tid, "--yes")
    theirs = run.create("theirs", "--team", "T2", "--new-team")
    for argv in [
        ("tokens", "show", tid),
        ("tokens", "disable", tid, "--yes"),
        ("tokens", "edit", tid, "--label", "stolen"),
        ("tokens", "delete", tid, "--yes"),
        ("tokens", "reveal", tid),
    ]:
        result = run(*argv, "--team", "T2")
        assert result.code == 1 and "not found" in result.err, argv
    listed = run.ok("tokens", "list", "--json", "--team", "T2").json()["tokens"]
    assert [row["id"] for row in listed] == [theirs["id"]]
    assert [event["token_id"] for event in _audit(run, "--team", "T2")] == [theirs["id"]]
    shown = run.show(tid)
    assert (shown["status"], shown["label"]) == ("active", "refuse")


def test_only_known_scopes_and_owners_without_spaces(run: Cli) -> None:
    bad = run("tokens", "create", "--label", "x", "--scope", "superuser", "--owner", "U1")
    assert bad.code == 1 and "Unknown scope" in bad.err
    spaced = run("tokens", "create", "--label", "x", "--scope", "read", "--owner", "U 1")
    assert spaced.code == 2 and "--owner" in spaced.err
    missing = run("tokens", "create", "--label", "x", "--scope", "read")
    assert missing.code == 2 and "--owner" in missing.err
    assert run.ok("tokens", "list", "--json").json()["total"] == 0


# -- audit ----------------------------------------------------------------------------


def test_audit_lists_every_action_with_actor_and_source(run: Cli) -> None:
    one = run.create("one")
    two = run.create("two")
    run.ok("tokens", "reveal", one["id"], "--as", "UOPS")
    run.ok("tokens", "disable", two["id"], "--yes")
    run.ok("tokens", "edit", one["id"], "--scope", "write")

    table = run.ok("audit").out.splitlines()
    assert table[0].split() == ["TIME", "ACTOR", "SOURCE", "ACTION", "TOKEN", "DETAILS"]
    rows = [line.split() for line in table[1:]]
    # TIME is two words (date, time): then ACTOR, SOURCE, ACTION, TOKEN, DETAILS
    assert [r[4] for r in rows] == ["edit", "disable", "reveal", "create", "create"]
    assert [r[2] for r in rows] == ["operator", "operator", "UOPS", "operator", "operator"]
    assert {r[3] for r in rows} == {"cli"}
    assert [r[5] for r in rows] == [one["id"], two["id"], one["id"], two["id"], one["id"]]
    assert "scope: read → write" in table[1]

    only_one = _audit(run, "--token", one["id"])
    assert [e["action"] for e in only_one] == ["edit", "reveal", "create"]
    assert set(only_one[0]) == {"at", "actor", "source", "action", "token_id", "details"}
    assert len(_audit(run, "--limit", "2")) == 2
    everything = run.ok("audit").out + json.dumps(_audit(run))
    assert one["secret"] not in everything and two["secret"] not in everything


# -- keys and database ----------------------------------------------------------------


def test_keys_rotate_then_dropping_the_old_key_still_reveals_secrets(
    run: Cli, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_key = env
    created = [run.create(f"token {n}") for n in range(3)]
    new_key = run.ok("keys", "generate").out.strip()
    Fernet(new_key.encode())  # a usable key
    assert new_key != run.ok("keys", "generate").out.strip()

    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", f"{new_key},{old_key}")
    assert "Re-encrypted 3 stored secrets" in run.ok("keys", "rotate").out
    assert "Re-encrypted 0 stored secrets" in run.ok("keys", "rotate").out

    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", new_key)
    for token in created:
        assert run.ok("tokens", "reveal", token["id"]).out.strip() == token["secret"]

    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", old_key)
    stale = run("tokens", "reveal", created[0]["id"])
    assert stale.code == 2 and "cannot be decrypted" in stale.err and stale.out == ""


def _head() -> str:
    from alembic.script import ScriptDirectory

    from bot.db import alembic_config, make_engine

    return ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).get_current_head()


def test_db_upgrade_on_a_migrated_database_says_there_is_nothing_to_do(run: Cli) -> None:
    assert f"already at the newest revision ({_head()})" in run.ok("db", "upgrade").out


def test_db_upgrade_creates_a_fresh_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/fresh.db")
    run = Cli(capsys, monkeypatch)
    out = run.ok("db", "upgrade").out
    assert f"upgraded from revision (empty database) to {_head()}" in out
    assert (tmp_path / "fresh.db").exists()
    assert "nothing to do" in run.ok("db", "upgrade").out


def test_an_unreachable_database_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("TOKENBOT_SECRET_KEYS", generate_key())
    run = Cli(capsys, monkeypatch)
    for argv in (("tokens", "list", "--team", "T1"), ("db", "upgrade")):
        result = run(*argv)
        assert result.code == 2
        assert "DATABASE_URL" in result.err and "Connection refused" in result.err
    monkeypatch.delenv("TOKENBOT_SECRET_KEYS")
    missing_key = run("tokens", "list")
    assert missing_key.code == 2 and "TOKENBOT_SECRET_KEYS" in missing_key.err


# -- team resolution ------------------------------------------------------------------


def test_the_team_defaults_to_the_only_one_in_the_database(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENBOT_TEAM_ID")
    for argv in (("tokens", "list"), ("audit",),
                 ("tokens", "create", "--label", "x", "--scope", "read", "--owner", "U1")):
        result = run(*argv)
        assert result.code == 2
        assert "--team" in result.err and "TOKENBOT_TEAM_ID" in result.err

    first = run.create("first", "--team", "TA")  # the first team needs no --new-team
    assert run.ok("tokens", "list", "--json").json()["tokens"][0]["id"] == first["id"]
    second = run.create("second")  # no --team: the only team there is
    assert run.show(second["id"], "--team", "TA")["label"] == "second"

    run.create("elsewhere", "--team", "TB", "--new-team")
    several = run("tokens", "list")
    assert several.code == 2 and "several teams" in several.err
    assert "TA" in several.err and "TB" in several.err

    monkeypatch.setenv("TOKENBOT_TEAM_ID", "TB")
    labels = [t["label"] for t in run.ok("tokens", "list", "--json").json()["tokens"]]
    assert labels == ["elsewhere"]
    labels = [t["label"] for t in run.ok("tokens", "list", "--json", "--team", "TA")
              .json()["tokens"]]
    assert sorted(labels) == ["first", "second"]


def test_with_no_team_yet_the_error_says_where_a_team_id_comes_from(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh install's first `tokens list`: one line that says what to do next."""
    monkeypatch.delenv("TOKENBOT_TEAM_ID")
    result = run("tokens", "list")
    assert result.code == 2 and result.out == ""
    (line,) = result.err.strip().splitlines()
    # What a team id is and where to find it.
    assert "Slack workspace's id" in line and "app.slack.com/client/T…" in line
    assert "tokenbot serve" in line and "in workspace T…" in line
    # How to name it, and how it becomes the default.
    assert "--team T…" in line and "TOKENBOT_TEAM_ID" in line
    assert "/tokens create" in line and "tokenbot tokens create --team T…" in line


# -- the installed script -------------------------------------------------------------


def _tokenbot_script() -> str:
    beside = Path(sys.executable).parent / "tokenbot"
    if beside.exists():
        return str(beside)
    found = shutil.which("tokenbot")
    if found is None:
        pytest.fail("the tokenbot console script is not installed (pip install -e .)")
    return found


@pytest.mark.slow
def test_installed_script_runs_on_the_embedded_default_from_a_fresh_directory(
    tmp_path: Path,
) -> None:
    script = _tokenbot_script()

    def tokenbot(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [script, *argv], cwd=tmp_path, env={}, capture_output=True, text=True,
            encoding="utf-8", timeout=120,
        )
        assert "Traceback" not in done.stderr
        return done

    empty = tokenbot("tokens", "list")
    assert empty.returncode == 2 and "--team" in empty.stderr
    assert (tmp_path / "tokenbot.db").exists()
    key_file = tmp_path / "tokenbot.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "generated an encryption key" in empty.stderr

    created = tokenbot("tokens", "create", "--team", "T1", "--label", "first", "--scope",
                       "read", "--owner", "U1", "--json")
    assert created.returncode == 0, created.stderr
    secret = json.loads(created.stdout)["secret"]
    assert "generated an encryption key" not in created.stderr  # reused, not regenerated

    listed = tokenbot("tokens", "list")
    assert listed.returncode == 0, listed.stderr
    assert "first" in listed.stdout and secret[:10] + "…" in listed.stdout
    assert secret not in listed.stdout
    assert tokenbot("tokens", "reveal", json.loads(created.stdout)["id"]).stdout.strip() == secret
    assert secret.encode() not in (tmp_path / "tokenbot.db").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("tokenbot.db-")) \
        == ["tokenbot.db", "tokenbot.key"]


@pytest.mark.parametrize("workers", ["0", "65"])
def test_serve_refuses_a_worker_count_out_of_range_in_one_line(run: Cli, workers: str) -> None:
    result = run("serve", "--workers", workers)
    assert result.code != 0
    assert result.err.strip().splitlines() == [
        "tokenbot: --workers must be from 1 to 64"]


# -- issue 20: rough edges a new user hit -----------------------------------------------

WHOLE_SECONDS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.mark.parametrize("url", ["mysql://u@127.0.0.1/tokenbot", "oracle://u@h/db", "nonsense"])
def test_an_unsupported_database_url_is_one_line_naming_the_supported_ones(
    run: Cli, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    for argv in (("tokens", "list"), ("audit",), ("db", "upgrade"), ("keys", "rotate")):
        result = run(*argv)
        assert result.code == 2, argv
        (line,) = result.err.strip().splitlines()
        assert "DATABASE_URL" in line and "sqlite:///" in line
        assert "postgresql+psycopg://" in line


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_refused(
    run: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/typo/tokenbot.db")
    for argv in (("tokens", "list"), ("db", "upgrade"),
                 ("tokens", "create", "--label", "x", "--scope", "read", "--owner", "U1")):
        result = run(*argv)
        assert result.code == 2, argv
        (line,) = result.err.strip().splitlines()
        assert "does not exist" in line and str(tmp_path / "typo") in line
    assert not (tmp_path / "typo").exists()

    # the embedded default, in the working directory, still needs nothing
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("TOKENBOT_SECRET_KEYS")
    assert run.ok("tokens", "list").out.startswith("No tokens.")
    assert (tmp_path / "tokenbot.db").exists()


def test_an_unknown_team_is_refused_and_a_new_team_is_asked_for(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = run.create("ours")  # TOKENBOT_TEAM_ID=T1: the first team needs no flag
    for argv in (("tokens", "list", "--team", "T1X"), ("audit", "--team", "T1X"),
                 ("tokens", "show", ours["id"], "--team", "T1X")):
        result = run(*argv)
        assert result.code == 2, argv
        assert "Unknown team T1X" in result.err and "T1" in result.err

    # a typo on create does not start a second team for ever
    typo = run("tokens", "create", "--team", "T1X", "--label", "x", "--scope", "read",
               "--owner", "U1")
    assert typo.code == 2 and "--new-team" in typo.err
    assert run("tokens", "list", "--team", "T1X").code == 2  # still unknown: nothing made
    theirs = run.create("theirs", "--team", "T2", "--new-team")
    assert [t["id"] for t in run.ok("tokens", "list", "--team", "T2", "--json")
            .json()["tokens"]] == [theirs["id"]]

    # once its last token is deleted, a team no longer makes "which team" ambiguous
    monkeypatch.delenv("TOKENBOT_TEAM_ID")
    assert "several teams" in run("tokens", "list").err
    run.ok("tokens", "delete", theirs["id"], "--team", "T2", "--yes")
    assert [t["id"] for t in run.ok("tokens", "list", "--json").json()["tokens"]] == [ours["id"]]
    # its history is still there to read
    assert run.ok("tokens", "list", "--team", "T2").out.startswith("No tokens.")
    assert {e["action"] for e in _audit(run, "--team", "T2")} == {"create", "delete"}


def test_per_page_limits_are_worded_once_and_a_page_past_the_end_is_empty(run: Cli) -> None:
    for argv in (("tokens", "list", "--per-page", "0"), ("tokens", "list", "--per-page", "1001"),
                 ("audit", "--limit", "1001")):
        result = run(*argv)
        assert result.code == 2
        assert "is not a whole number from 1 to 1,000" in result.err, argv

    made = {run.create(f"t{n}")["id"] for n in range(3)}
    past = run.ok("tokens", "list", "--per-page", "2", "--page", "3", "--json").json()
    assert past["tokens"] == [] and past["page"] == 3
    assert (past["pages"], past["total"], past["total_exact"]) == (2, 3, True)
    assert run.ok("tokens", "list", "--per-page", "2", "--page", "3").out.strip() == (
        "Page 3 is past the end: there are 2 pages, 3 tokens.")

    # a script reading pages until an empty one stops, having seen every token once
    seen: list[str] = []
    for number in range(1, 10):
        rows = run.ok("tokens", "list", "--per-page", "2", "--page", str(number),
                      "--json").json()["tokens"]
        if not rows:
            break
        seen += [row["id"] for row in rows]
    assert number == 3 and sorted(seen) == sorted(made)


@pytest.mark.parametrize("overlap", ["-5m", "0m", "0h", "31d", "43201m"])
def test_an_overlap_out_of_range_is_a_clear_error(run: Cli, overlap: str) -> None:
    token = run.create("rotating")
    result = run("tokens", "rotate", token["id"], "--yes", "--overlap", overlap)
    assert result.code == 2
    assert "the overlap must be between 1 minute and 30 days" in result.err
    assert run.show(token["id"])["masked"] == token["masked"]


def test_edit_with_nothing_to_change_is_a_usage_error(run: Cli) -> None:
    token = run.create("unchanged")
    result = run("tokens", "edit", token["id"])
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "Nothing to change" in line and "--label" in line
    assert _audit(run)[0]["action"] == "create"


def test_version_prints_the_packages_version(run: Cli) -> None:
    from importlib.metadata import version

    assert run.ok("--version").out.strip() == f"tokenbot {version('tokenbot')}"


def test_rotate_with_yes_during_an_overlap_says_the_earlier_old_secret_stopped(
    run: Cli,
) -> None:
    token = run.create("rotating")
    run.ok("tokens", "rotate", token["id"], "--yes", "--overlap", "1h")
    earlier = run.show(token["id"])["rotation"]["old_masked"]
    again = run.ok("tokens", "rotate", token["id"], "--yes")
    assert f"The earlier rotation's old secret ({earlier}) was stopped" in again.out

    run.ok("tokens", "rotate", token["id"], "--yes", "--overlap", "1h")
    earlier = run.show(token["id"])["rotation"]["old_masked"]
    as_json = run.ok("tokens", "rotate", token["id"], "--yes", "--overlap", "1h", "--json")
    assert f"The earlier rotation's old secret ({earlier}) was stopped" in as_json.err
    assert as_json.json()["rotation"]["old_masked"] != earlier

    # an ordinary rotation says nothing of the kind
    plain_token = run.create("plain")
    assert "earlier rotation" not in run.ok("tokens", "rotate", plain_token["id"], "--yes").out


def test_every_json_timestamp_is_utc_whole_seconds_with_z(run: Cli) -> None:
    token = run.create("stamped", "--expires", _later(5))
    rotated = run.ok("tokens", "rotate", token["id"], "--yes", "--overlap", "2h", "--json").json()
    listed = run.ok("tokens", "list", "--json").json()["tokens"][0]
    for row in (token, rotated, listed, run.show(token["id"])):
        for name in ("created_at", "expires_at"):
            assert WHOLE_SECONDS_UTC.match(row[name]), (name, row[name])
    assert WHOLE_SECONDS_UTC.match(rotated["rotation"]["old_works_until"])

    events = _audit(run)
    assert all(WHOLE_SECONDS_UTC.match(event["at"]) for event in events)
    (rotation,) = [event for event in events if event["action"] == "rotate"]
    assert rotation["details"]["old_works_until"] == rotated["rotation"]["old_works_until"]
    assert f"old_works_until={rotated['rotation']['old_works_until']}" in run.ok("audit").out


@pytest.mark.slow
def test_output_cut_short_by_its_reader_is_no_traceback(run: Cli) -> None:
    """`tokenbot audit | head -1`: the reader leaves before the output is written."""
    for number in range(30):
        run.create(f"token {number}")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "audit", "--json"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # before the command has printed anything
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_a_change_from_the_cli_tells_the_owner_by_the_next_pass(
    run: Cli, standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator disables someone's token: the owner's DM is queued with the change and
    the next pass posts it, naming the operator, never as a broken mention."""
    token = run.create(owner="U1")
    run.ok("tokens", "disable", token["id"], "--yes")
    run.ok("tokens", "enable", token["id"], "--yes", "--as", "UADMIN2")
    monkeypatch.setenv("SLACK_API_URL", standin.api_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    run.ok("alerts", "run")
    dms = [c.body["text"] for c in standin.calls_to("chat.postMessage")
           if c.body["channel"] == "U1"]
    assert dms == ["an operator (CLI) disabled your token ci deploy.",
                   "<@UADMIN2> enabled your token ci deploy."]
    run.ok("alerts", "run")  # once
    assert len(standin.calls_to("chat.postMessage")) == 2
