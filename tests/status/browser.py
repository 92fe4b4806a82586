"""Debian's chromium driven by Playwright for Python (never Playwright's own download), for the
status page tests; they skip when it is missing, except under CI (``CI=true``), where they
fail: ``make browser`` installs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TQ_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[1] / "output"
"""Where the tests write their screenshots (``tests/output/``, not in git)."""


def require_chromium() -> None:
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed (make browser installs Debian's chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (make installs it from requirements-dev.lock)"
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the status page tests need a browser under CI: {missing}")
    pytest.skip(missing)


@contextmanager
def browser_context(profile: Path, **options: Any) -> Iterator[Any]:
    """A fresh chromium (an empty profile directory) and its one context."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile.mkdir(parents=True, exist_ok=True)
    assert not any(profile.iterdir()), "the profile directory must start empty"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1200, "height": 800},
            **options,
        )
        try:
            yield context
        finally:
            context.close()


def screenshot(page: Any, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
