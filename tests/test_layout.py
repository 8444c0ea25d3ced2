"""The layout's rules, checked so that nobody has to remember them (docs/ARCHITECTURE.md):
services know nothing of Slack, no module grows past 500 lines, no function past a
cyclomatic complexity of 15."""

from __future__ import annotations

import ast
from pathlib import Path

from radon.complexity import cc_visit

BOT = Path(__file__).resolve().parent.parent / "bot"
SLACK_PACKAGES = ("slack_sdk", "slack_bolt", "bot.slack")
MAX_LINES = 500
MAX_COMPLEXITY = 15


def _sources() -> list[Path]:
    return sorted(p for p in BOT.rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_services_import_nothing_from_slack() -> None:
    offenders = {
        str(path.relative_to(BOT)): sorted(name for name in _imports(path)
                                           if name.startswith(SLACK_PACKAGES))
        for path in (BOT / "services").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_no_module_is_over_500_lines() -> None:
    long = {str(p.relative_to(BOT)): n for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_no_function_is_over_complexity_15() -> None:
    complex_ = {
        f"{path.relative_to(BOT)}:{block.fullname}": block.complexity
        for path in _sources()
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > MAX_COMPLEXITY
    }
    assert complex_ == {}


LISTENERS = BOT / "slack" / "listeners"
SHARED_LISTENER_MODULES = {"__init__.py", "common.py", "errors.py"}


def test_the_error_path_knows_no_surface() -> None:
    """Each surface (table, Home, digest, modal, alarm) answers its own errors: the common
    error path imports none of them, so a new surface does not edit it."""
    surfaces = {f"bot.slack.listeners.{path.stem}" for path in LISTENERS.glob("*.py")
                if path.name not in SHARED_LISTENER_MODULES}
    surfaces |= {"bot.slack.views.home", "bot.slack.views.modals", "bot.slack.views.digests"}
    assert _imports(LISTENERS / "errors.py") & surfaces == set()


def test_each_listener_module_registers_its_own_listeners_and_nothing_by_import() -> None:
    """``register(app)`` in every listener module; no decorator marks a function at
    import, and no listener builds a Slack payload to run another one."""
    for path in sorted(LISTENERS.glob("*.py")):
        if path.name in SHARED_LISTENER_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert "register" in {f.name for f in functions}, path.name
        assert [f.name for f in functions if f.decorator_list] == [], path.name
        assert '"block_actions"' not in path.read_text(encoding="utf-8"), path.name
