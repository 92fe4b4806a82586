"""Expand a SAM template into plain CloudFormation JSON, offline (run in ``.venv-sam``).

cfn-lint no longer runs the SAM transform, so the checks lint this script's output. A local
``CodeUri`` becomes a placeholder S3 URI (what ``sam package`` would put there).

Usage: ``python infra/scripts/sam_transform.py template.yaml out.json [Name=Value ...]``
(``Name=Value`` override parameter defaults before the transform; they stay parameters).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

PLACEHOLDER_CODE = "s3://placeholder-bucket/code.zip"


class _NoManagedPolicies:
    """The policy loader samtranslator asks for AWS-managed policy ARNs; the template names
    none, so there is nothing to look up (and no network to look it up with)."""

    def load(self) -> dict[str, str]:
        return {}


def transform(template_path: str, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """The CloudFormation template that ``template_path`` (SAM) expands to."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform as sam_transform
    from samtranslator.yaml_helper import yaml_parse

    doc: dict[str, Any] = yaml_parse(Path(template_path).read_text())
    globals_fn = doc.get("Globals", {}).get("Function", {})
    if isinstance(globals_fn.get("CodeUri"), str) and "://" not in globals_fn["CodeUri"]:
        globals_fn["CodeUri"] = PLACEHOLDER_CODE
    for resource in doc.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if isinstance(props.get("CodeUri"), str) and "://" not in props["CodeUri"]:
            props["CodeUri"] = PLACEHOLDER_CODE
    for name, value in (overrides or {}).items():
        doc["Parameters"][name]["Default"] = value
    return dict(sam_transform(doc, {}, _NoManagedPolicies()))


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    overrides = dict(arg.split("=", 1) for arg in argv[3:])
    Path(argv[2]).write_text(json.dumps(transform(argv[1], overrides), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
