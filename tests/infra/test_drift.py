"""The SAM and CDK templates build the same stack: same tables, keys, GSIs, TTL, stream mode,
event source settings, environment variable names, IAM actions, queues, alarms, buckets."""

from __future__ import annotations

import copy
from typing import Any

from tests.infra.templates import Template, summary


def test_sam_and_cdk_templates_agree(
    sam_template: dict[str, Any], cdk_template: dict[str, Any]
) -> None:
    sam, cdk = summary(Template(sam_template)), summary(Template(cdk_template))
    assert sam.keys() == cdk.keys()
    for key in sam:
        assert sam[key] == cdk[key], key


def test_the_comparison_sees_a_drift(cdk_template: dict[str, Any]) -> None:
    drifted = copy.deepcopy(cdk_template)
    for resource in drifted["Resources"].values():
        if resource["Type"] == "AWS::DynamoDB::Table":
            resource["Properties"]["GlobalSecondaryIndexes"][0]["IndexName"] = "by_time"
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            resource["Properties"].pop("BisectBatchOnFunctionError", None)
    before, after = summary(Template(cdk_template)), summary(Template(drifted))
    assert before["tables"] != after["tables"]
    assert before["event_source_mappings"] != after["event_source_mappings"]
