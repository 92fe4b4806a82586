"""The JSON Schema of a task record, generated from the codec's own pydantic model.

``schemas/task-record.v<N>.json`` is committed for producers in other languages;
``tests/docs/test_wire_schema.py`` fails when it drifts from the model. After a change to the
record (``tq_aws.core.codec``, ``tq_aws.core.task``) write it again with::

    .venv/bin/python -m tests.docs.wire_schema
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
from pathlib import Path
from typing import Any

from tq_aws.core import codec
from tq_aws.core.task import Entity, Task

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_ID = "https://tq-aws.dev/schemas/task-record.v{v}.json"
"""An identifier, not a download location: the file ships in the repository."""

DESCRIPTION = (
    "One tq-aws task record: the bytes of a Kinesis record's data, the text of an SQS message "
    "body (base64 of the bytes when they are zlib-compressed), or an EventBridge Scheduler "
    "target's input, as UTF-8 JSON. Datetimes are ISO-8601 strings; give them in UTC with a "
    "zone ('Z' or '+00:00'). A producer sets type and queue_id, and should set id (unique; "
    "a UUIDv7 keeps ids time-sortable); everything else is optional. status, stored, "
    "execution_stats, execution_result and processing_started_at are the framework's own. "
    "See docs/wire-format.md."
)


def schema_path(version: int = codec.CODEC_VERSION) -> Path:
    return ROOT / "schemas" / f"task-record.v{version}.json"


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a class's annotated attributes (``x: int`` then
    ``\"\"\"...\"\"\"``), by attribute name."""
    tree = ast.parse(inspect.getsource(cls))
    [definition] = tree.body
    assert isinstance(definition, ast.ClassDef)
    body = definition.body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            text = " ".join(inspect.cleandoc(after.value.value).split())
            docs[node.target.id] = text.replace("``", "`")
    return docs


def _describe(definition: dict[str, Any], docs: dict[str, str]) -> None:
    for name, prop in definition.get("properties", {}).items():
        if name in docs and "description" not in prop:
            prop["description"] = docs[name]
        prop.pop("title", None)
    definition.pop("description", None)


def build_schema() -> dict[str, Any]:
    """The schema of ``{"v": CODEC_VERSION, "task": {...}}`` as the decoder validates it."""
    version = codec.CODEC_VERSION
    model = codec._EnvelopeV1
    generated = model.model_json_schema(mode="validation")
    defs = generated.pop("$defs")
    _describe(defs["Task"], attribute_docs(Task))
    _describe(defs["Entity"], attribute_docs(Entity))
    defs["TaskStatus"].pop("title", None)
    generated["properties"]["v"]["description"] = (
        f"The codec version; this schema is version {version}. A record of another version is "
        "kept aside as poison (reason unknown_version), never run."
    )
    generated["properties"]["v"].pop("title", None)
    generated.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(v=version),
        "title": f"tq-aws task record, version {version}",
        "description": DESCRIPTION,
        **generated,
        "$defs": defs,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    path = schema_path()
    path.parent.mkdir(exist_ok=True)
    path.write_text(render(build_schema()))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
