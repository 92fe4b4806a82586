"""The wire format carried by Kinesis records, SQS messages and the memory transport.

Version 1 is the UTF-8 JSON object ``{"v": 1, "task": {...}}`` with datetimes as UTC
ISO-8601 strings. ``execute_at`` and ``updated_at`` are left out when they equal ``created_at``
(every task as it is added) and read back from it; when ``created_at`` is set, an absent one of
them is written as ``null``. A record may be zlib-compressed; JSON always starts with ``{`` and
a zlib stream with ``0x78``, so the first byte tells them apart without a header of our own.

Rolling deploys: a record of this version written by a newer release may carry fields this
release does not know (a new optional field of the task or its entity); they are skipped, as
protobuf skips unknown fields, and the task runs. A record of a newer *version* is refused
(``unknown_version``): its meaning may have changed.

An SQS message body is text: the record's JSON as is, or, when the record is compressed (or the
JSON holds characters SQS does not carry), base64 of its bytes (``encode_sqs_body``). JSON
always starts with ``{`` and base64 never does. The SQS backend writes it and both the SQS
source and the Lambda runtime read it (``decode_sqs_body``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import zlib
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json

from tq_aws.core.task import Entity, Task, assemble, fast_fields
from tq_aws.errors import CodecError

logger = logging.getLogger(__name__)

CODEC_VERSION = 1
_ZLIB_MAGIC = 0x78
_ZLIB_PREFIX = bytes([_ZLIB_MAGIC])


_PREFIX = b'{"v":1,"task":'
_PREFIX_LEN = len(_PREFIX)
_SAME_AS_CREATED = ("execute_at", "updated_at")
_SAME_AS_CREATED_SET = frozenset(_SAME_AS_CREATED)
_TASK_VALIDATOR = Task.__pydantic_validator__


class _EnvelopeV1(BaseModel):
    v: Literal[1]
    task: Task


def encode_task(task: Task, *, compress_over: int | None = None) -> bytes:
    """Encode ``task`` as one record.

    Args:
        task: the task to encode; defaults and ``None`` fields are left out to keep records small.
        compress_over: compress with zlib when the JSON is larger than this many bytes
            (``None``: never). Compression is kept only when it makes the record smaller.
    """
    created = task.created_at
    same: set[str] | None = None
    absent = b""
    if created is not None:
        # Times equal to created_at (every task as added) are left out and read back from it;
        # an absent time is then written as an explicit null, so it reads back absent.
        for name in _SAME_AS_CREATED:
            value = getattr(task, name)
            if value is None:
                absent += b',"' + name.encode() + b'":null'
            elif value is created or value == created:
                same = {name} if same is None else {*same, name}
    fast = _fast_body(task, same)
    if fast is not None:
        data = _PREFIX + fast[:-1] + absent + b"}}" if absent else _PREFIX + fast + b"}"
    else:
        body = task.model_dump_json(exclude_none=True, exclude_defaults=True, exclude=same)
        data = (
            _PREFIX + body.encode()[:-1] + absent + b"}}"
            if absent
            else _PREFIX + body.encode() + b"}"
        )
    if compress_over is not None and len(data) > compress_over:
        packed = zlib.compress(data, 6)
        if len(packed) < len(data):
            return packed
    return data


# -- writing a task without the model serializer's walk ---------------------------------------
# The model serializer (``model_dump_json(exclude_none=True, exclude_defaults=True)``) visits all
# of Task's fields; most records hold five. ``_fast_body`` writes the same bytes for a task
# whose data fields hold plain JSON values (no model, dataclass or other object nested in
# them, whose own defaults the model serializer would also leave out) from a dict of the
# fields that are set, in one ``to_json`` call; anything else goes through the model
# serializer (tests/unit/test_task_fast_path.py compares the two).

_FIELD_ORDER = tuple(Task.model_fields)
_NON_NONE_DEFAULTS = {
    name: info.get_default(call_default_factory=True)
    for name, info in Task.model_fields.items()
    if not info.is_required() and info.get_default(call_default_factory=True) is not None
}
_DATA_FIELDS = frozenset({"payload", "execution_result", "execution_stats", "metadata"})
_ATOMS = (str, int, float, bool, type(None))
_PLAIN_BUDGET = 64
"""Values looked at in a task's data fields before it goes to the model serializer instead."""


def _plain(value: Any, budget: int) -> int:
    """What is left of ``budget`` after checking that ``value`` is plain JSON data (dicts with
    text keys, lists, text, numbers, booleans, None); -1 when it is not, or is too large."""
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            return -1
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return -1
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind not in _ATOMS:
            return -1
    return budget


def _fast_body(task: Task, skip: set[str] | None) -> bytes | None:
    values = task.__dict__
    out: dict[str, Any] = {}
    budget = _PLAIN_BUDGET
    for name in _FIELD_ORDER:
        value = values[name]
        if value is None or (skip is not None and name in skip):
            continue
        if name in _NON_NONE_DEFAULTS and value == _NON_NONE_DEFAULTS[name]:
            continue
        if name in _DATA_FIELDS:
            budget = _plain(value, budget)
            if budget < 0:
                return None
        elif name == "entity" and type(value) is not Entity:
            return None  # a subclass: the model serializer writes Entity's fields only
        out[name] = value
    return to_json(out, inf_nan_mode="null")


def decode_task(data: bytes) -> Task:
    """Decode one record into a task.

    Raises:
        CodecError: ``reason`` is ``malformed`` (not JSON / bad compression),
            ``unknown_version`` (a ``v`` this release does not read) or ``invalid_task``.
    """
    task: Task
    if data.startswith(_PREFIX):
        # what encode_task writes: the task alone, no envelope object, parsed once and built
        # directly when it holds plain values (fast_fields); anything else, an error
        # included, is left to pydantic and the full path below
        body = data[_PREFIX_LEN:-1]
        try:
            doc = from_json(body)
        except ValueError:
            doc = None
        fields = fast_fields(doc, json=True) if type(doc) is dict else None
        if fields is not None:
            if type(fields["entity"]) is dict:
                fields["entity"] = _entity(fields["entity"])
            if fields["entity"] is not False:
                task = assemble(object.__new__(Task), fields, set(doc))
                return _with_times(task)
        try:
            task = _TASK_VALIDATOR.validate_json(body)
        except ValidationError:
            pass
        else:
            return _with_times(task)
    if data[:1] == _ZLIB_PREFIX:
        try:
            data = zlib.decompress(data)
        except zlib.error as exc:
            raise CodecError(f"record is not valid zlib data: {exc}", reason="malformed") from exc
    try:
        if data.startswith(_PREFIX) and data.endswith(b"}"):
            task = _TASK_VALIDATOR.validate_json(data[_PREFIX_LEN:-1])
        else:
            task = _EnvelopeV1.model_validate_json(data).task
    except ValidationError as exc:
        newer = _without_unknown_fields(data, exc)
        if newer is None:
            raise _classify(data, exc) from exc
        task = newer
    return _with_times(task)


def _without_unknown_fields(data: bytes, exc: ValidationError) -> Task | None:
    """The task of a version-1 record whose only fault is fields this release does not know
    (a newer producer's optional fields), read without them; ``None`` otherwise."""
    errors = exc.errors()
    if not errors or any(e["type"] != "extra_forbidden" for e in errors):
        return None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != CODEC_VERSION:
        return None
    task = doc.get("task")
    if not isinstance(task, dict):
        return None
    skipped = []
    for error in errors:
        loc = list(error["loc"])
        if loc and loc[0] == "task":
            loc = loc[1:]
        parent: object = task
        for part in loc[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not loc or not isinstance(parent, dict) or loc[-1] not in parent:
            return None
        del parent[loc[-1]]
        skipped.append(".".join(str(p) for p in loc))
    try:
        decoded: Task = _TASK_VALIDATOR.validate_json(json.dumps(task))
    except ValidationError:
        return None
    logger.debug("task %s: fields unknown to this release skipped: %s", decoded.id, skipped)
    return decoded


def _entity(value: dict[str, Any]) -> Entity | bool:
    """The entity of a decoded record, or ``False`` when pydantic must read it."""
    try:
        return Entity(**value)
    except (ValidationError, TypeError):
        return False


def _with_times(task: Task) -> Task:
    """Restore the times ``encode_task`` left out because they equal ``created_at``."""
    created = task.created_at
    if created is not None:
        missing = _SAME_AS_CREATED_SET - task.__pydantic_fields_set__
        if missing:
            for name in missing:
                task.__dict__[name] = created
            task.__pydantic_fields_set__.update(missing)
    return task


def _classify(data: bytes, exc: ValidationError) -> CodecError:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return CodecError("record is not a JSON document", reason="malformed")
    if not isinstance(doc, dict) or "v" not in doc:
        return CodecError("record has no codec version field 'v'", reason="malformed")
    if doc["v"] != CODEC_VERSION:
        return CodecError(
            f"record has codec version {doc['v']!r}; this release reads version {CODEC_VERSION}",
            reason="unknown_version",
        )
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return CodecError(
        f"record holds an invalid task: {where}: {first['msg']}", reason="invalid_task"
    )


# -- SQS message bodies ----------------------------------------------------------------------

# Characters SQS refuses in a body (outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD and
# #x10000-#x10FFFF); JSON escapes the controls, so only these two can appear raw.
_NOT_IN_SQS = re.compile("[\ufffe\uffff]")


def encode_sqs_body(data: bytes) -> str:
    """The SQS message body of a codec record: JSON text as is, anything else as base64."""
    if data[:1] == b"{":
        text = data.decode("utf-8")
        if not _NOT_IN_SQS.search(text):
            return text
    return base64.b64encode(data).decode("ascii")


def decode_sqs_body(body: str) -> bytes:
    """The codec record of an SQS message body (see ``encode_sqs_body``).

    Raises:
        CodecError: the body is neither JSON nor base64 (``reason="malformed"``).
    """
    if body.startswith("{"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise CodecError(
            "message body is neither codec JSON nor base64 of a record", reason="malformed"
        ) from exc
