"""docs/troubleshooting.md names every error a user can meet: each class of tq_aws.errors and
each reason a record can be parked in the poison store for."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import tq_aws.errors
from tq_aws.core import kpl
from tq_aws.engine import processor

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"


def mentioned(text: str) -> set[str]:
    """The names the page writes as code: `Name`."""
    return set(re.findall(r"`([^`\s]+)`", text))


def error_classes() -> list[str]:
    return sorted(
        name
        for name, value in vars(tq_aws.errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == tq_aws.errors.__name__
    )


def poison_reasons() -> set[str]:
    """Every reason the code gives a record it parks: the codec's and the Lambda records'
    ``reason="..."``, the KPL reader's, and the engine's own."""
    found = {kpl.KPL_MALFORMED, processor.UNRECORDABLE, processor.MAX_DELIVERIES, "unknown"}
    for path in (ROOT / "tq_aws").rglob("*.py"):
        found.update(re.findall(r'reason="([a-z_]+)"', path.read_text()))
    return found


def test_every_error_class_is_on_the_troubleshooting_page() -> None:
    names = mentioned(PAGE.read_text())
    missing = [name for name in error_classes() if name not in names]
    assert not missing, f"docs/troubleshooting.md does not explain {missing}: add each one"


def test_every_poison_reason_is_on_the_troubleshooting_page() -> None:
    names = mentioned(PAGE.read_text())
    missing = sorted(reason for reason in poison_reasons() if reason not in names)
    assert not missing, f"docs/troubleshooting.md does not explain poison reasons {missing}"


def test_the_checks_find_what_they_look_for() -> None:
    classes = set(error_classes())
    assert {"TqError", "TaskValidationError", "PermanentFailure", "KeyBlockedError"} <= classes
    assert "Any" not in classes and "Mapping" not in classes  # imported, not defined there
    assert {"malformed", "unknown_version", "invalid_task", "kpl_malformed"} <= poison_reasons()
    assert mentioned("a `TqError`, `two words` and TqError alone") == {"TqError"}
