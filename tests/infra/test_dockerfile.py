"""The ECS worker image (no container runtime here: the Dockerfile is read, and the command it
runs is run from the infra environment)."""

from __future__ import annotations

import json
import re

from tests.infra.conftest import INFRA_BIN, ROOT, run


def instructions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"^([A-Z]+)\s+(.*)$", line.strip())
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def test_the_image_runs_the_worker_from_tq_app_as_a_non_root_user() -> None:
    found = instructions()
    [entrypoint] = found["ENTRYPOINT"]
    assert 'exec tq-aws worker --app "$TQ_APP"' in json.loads(entrypoint)[2]
    assert json.loads(found["CMD"][0]) == ["--grace-seconds", "30"]
    assert found["USER"] == ["10001"]
    assert any("--constraint requirements.lock" in run_ for run_ in found["RUN"])


def test_the_worker_takes_the_options_the_templates_pass() -> None:
    result = run([INFRA_BIN / "tq-aws", "worker", "--help"])
    assert result.returncode == 0, result.stderr
    assert "--grace-seconds" in result.stdout
    assert "--app" in result.stdout
