"""The linters and policy checks on both templates, with zero unacknowledged findings:
``sam validate --lint``, cfn-lint (with cfn-lint-serverless and our rules in
``infra/cfn_rules``), checkov, and cdk-nag's AWS Solutions and Serverless packs at synth."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import (
    CHECKOV_BIN,
    INFRA,
    INFRA_BIN,
    ROOT,
    SAM_BIN,
    run,
    sam_transform,
)

CFN_LINT_RULES = ["-a", str(INFRA / "cfn_rules"), "-a", "cfn_lint_serverless.rules"]

VARIANTS = {
    "ecs-on": {
        "EnableEcsWorker": "true",
        "EcsImage": "public.ecr.aws/example/tq-aws:1",
        "EcsSubnetIds": "subnet-0123456789abcdef0",
        "EcsSecurityGroupIds": "sg-0123456789abcdef0",
    },
    "sqs-off": {"EnableSqs": "false"},
    "provisioned": {"StreamMode": "PROVISIONED", "ShardCount": "2"},
}


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    return run([INFRA_BIN / "cfn-lint", template, *CFN_LINT_RULES])


def test_sam_validate_lint_passes_offline_without_credentials() -> None:
    result = run(
        [SAM_BIN / "sam", "validate", "--lint", "-t", ROOT / "template.yaml"],
        env=None,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_passes_on_the_transformed_sam_template(sam_json: Path) -> None:
    result = cfn_lint(sam_json)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_passes_on_sam_with_other_parameters(tmp_path: Path, variant: str) -> None:
    out = tmp_path / "template.json"
    sam_transform(out, **VARIANTS[variant])
    result = cfn_lint(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_passes_on_the_cdk_template(cdk_json: Path) -> None:
    result = cfn_lint(cdk_json)
    assert result.returncode == 0, result.stdout + result.stderr


def checkov(path: Path) -> dict[str, Any]:
    result = run(
        [
            CHECKOV_BIN / "checkov",
            "-f",
            path,
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ]
    )
    report: Any = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [
        (c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert result.returncode == 0 and not failed, failed or result.stderr
    return dict(report)


@pytest.mark.parametrize("which", ["sam-transformed", "sam-source", "cdk"])
def test_checkov_passes_and_every_skip_has_a_reason(
    which: str, request: pytest.FixtureRequest
) -> None:
    path = {
        "sam-transformed": lambda: request.getfixturevalue("sam_json"),
        "sam-source": lambda: ROOT / "template.yaml",
        "cdk": lambda: request.getfixturevalue("cdk_json"),
    }[which]()
    report = checkov(path)
    skipped = report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment") or "") > 20, check["check_id"]


def test_cdk_nag_packs_pass_at_synth_and_every_acknowledgment_has_a_reason(
    cdk_synth: subprocess.CompletedProcess[str],
) -> None:
    assert cdk_synth.returncode == 0, cdk_synth.stdout + cdk_synth.stderr
    report = json.loads((INFRA / "cdk.out" / "validation-report.json").read_text())
    plugins = {p["pluginName"]: p for p in report["pluginReports"]}
    assert set(plugins) == {"AwsSolutions", "Serverless"}
    for plugin in plugins.values():
        assert plugin["conclusion"] == "success"
        assert plugin["violations"] == []
        for suppressed in plugin.get("suppressedViolations", []):
            assert len(suppressed["reason"]) > 20, suppressed["ruleName"]


def test_cdk_nag_fails_the_synth_on_an_unacknowledged_finding() -> None:
    script = (
        "import aws_cdk as cdk\n"
        "from aws_cdk import aws_sqs as sqs\n"
        "from tq_aws_infra import add_policy_checks\n"
        "app = cdk.App(outdir=__import__('tempfile').mkdtemp())\n"
        "sqs.Queue(cdk.Stack(app, 'S'), 'Q')\n"
        "add_policy_checks(app)\n"
        "app.synth()\n"
    )
    result = run([INFRA_BIN / "python", "-c", script], cwd=INFRA)
    assert result.returncode != 0
    assert "AwsSolutions-SQS3" in result.stdout + result.stderr


def test_sam_lint_ignores_carry_a_reason() -> None:
    """Each cfn-lint ``ignore_checks`` in template.yaml follows a comment saying why."""
    lines = (ROOT / "template.yaml").read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "ignore_checks" in line]
    assert ignores
    for i in ignores:
        assert lines[i - 1].strip().startswith("#"), lines[i]


def test_cdk_lint_ignores_carry_a_reason(cdk_template: dict[str, Any]) -> None:
    ignored = 0
    for name, resource in cdk_template["Resources"].items():
        metadata = resource.get("Metadata", {})
        checks = metadata.get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
        reasons = metadata.get("cfn-lint-reasons", {})
        for check in checks:
            ignored += 1
            assert re.search(r"\w{4,}", reasons.get(check, "")), (name, check)
    assert ignored
