"""Fixtures of the deploy tests: the SAM template after its transform and the CDK app's synth,
each made once per test run by the tool environments that ``make infra`` builds.

These tests run in ``.venv-infra`` (the runtime's lock plus aws-cdk-lib, cdk-nag, cfn-lint);
in any other environment, such as the runtime's ``.venv``, they are not collected.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SAM_BIN = ROOT / ".venv-sam" / "bin"
CHECKOV_BIN = ROOT / ".venv-checkov" / "bin"
INFRA_BIN = ROOT / ".venv-infra" / "bin"

if importlib.util.find_spec("aws_cdk") is None:
    collect_ignore_glob = ["test_*.py"]


def offline_env(**extra: str) -> dict[str, str]:
    """The environment of a tool run: fake credentials, a region, no telemetry."""
    env = dict(os.environ)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        env.pop(key, None)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        BC_SKIP_MAPPING="TRUE",
    )
    env.update(extra)
    return env


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool offline; the result keeps stdout and stderr for assertion messages."""
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=600,
        env=kwargs.pop("env", None) or offline_env(),
        **kwargs,
    )


def sam_transform(out: Path, **overrides: str) -> dict[str, Any]:
    """``template.yaml`` after aws-sam-translator's transform (in ``.venv-sam``)."""
    result = run(
        [
            SAM_BIN / "python",
            INFRA / "scripts" / "sam_transform.py",
            ROOT / "template.yaml",
            out,
            *(f"{k}={v}" for k, v in overrides.items()),
        ]
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(out.read_text()))


@pytest.fixture(scope="session")
def sam_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SAM template transformed with every parameter at its default, as a JSON file."""
    out = tmp_path_factory.mktemp("sam") / "template.json"
    sam_transform(out)
    return out


@pytest.fixture(scope="session")
def sam_template(sam_json: Path) -> dict[str, Any]:
    return dict(json.loads(sam_json.read_text()))


@pytest.fixture(scope="session")
def cdk_synth() -> subprocess.CompletedProcess[str]:
    """``python infra/app.py`` run from the repository root, as a user would."""
    return run([INFRA_BIN / "python", INFRA / "app.py"], cwd=ROOT)


@pytest.fixture(scope="session")
def cdk_json(cdk_synth: subprocess.CompletedProcess[str]) -> Path:
    assert cdk_synth.returncode == 0, cdk_synth.stdout + cdk_synth.stderr
    return INFRA / "cdk.out" / "TqAws.template.json"


@pytest.fixture(scope="session")
def cdk_template(cdk_json: Path) -> dict[str, Any]:
    return dict(json.loads(cdk_json.read_text()))
