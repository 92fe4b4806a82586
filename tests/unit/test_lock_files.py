"""The lock files: requirements.lock is the runtime alone (what `make demo` installs),
requirements-dev.lock the development tools beside it (what `make test` adds)."""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a lock file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            out[canonicalize_name(name)] = version
    return out


def runtime_closure() -> set[str]:
    """tq-aws and every distribution its dependencies (no extras of its own) pull in, as
    installed."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("tq-aws", frozenset())]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return seen - {"tq-aws"}


def test_the_runtime_lock_is_the_runtime_and_nothing_else() -> None:
    runtime = pins(ROOT / "requirements.lock")
    closure = runtime_closure()
    assert not closure - set(runtime), "runtime dependencies missing from requirements.lock"
    assert not set(runtime) - closure, (
        "requirements.lock pins packages the runtime does not need (move them to "
        "requirements-dev.lock)"
    )
    for tool in ("pytest", "mypy", "ruff", "moto", "hypothesis", "playwright"):
        assert tool not in runtime


def test_the_dev_lock_pins_the_dev_extra_beside_the_runtime() -> None:
    runtime = pins(ROOT / "requirements.lock")
    dev = pins(ROOT / "requirements-dev.lock")
    assert not set(runtime) & set(dev), "a package pinned in both lock files"
    requirements = [Requirement(t) for t in metadata.distribution("tq-aws").requires or []]
    extra = [r for r in requirements if r.marker and r.marker.evaluate({"extra": "dev"})]
    assert extra, "the dev extra of pyproject.toml is not installed"
    for req in extra:
        name = canonicalize_name(req.name)
        assert name in dev, f"{req.name} of the dev extra is not pinned in requirements-dev.lock"
        pinned = dev[name]
        assert req.specifier.contains(pinned), f"{req}, but requirements-dev.lock pins {pinned}"
