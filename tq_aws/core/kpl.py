"""KPL aggregated records: one Kinesis record holding many user records, as the Kinesis Producer
Library (and ``aws-kinesis-agg``) writes them, read back the way the KCL does.

The format (amazon-kinesis-producer, ``aggregation-format.md``): the magic bytes
``f3 89 9a c2``, a protobuf ``AggregatedRecord``, then the MD5 digest of the protobuf bytes::

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
      repeated Tag    tags                    = 4;
    }

A user record's place is its parent's sequence number and its index in ``records`` (the KCL's
``subSequenceNumber``). The decoder is a few lines of protobuf wire format (varints and
length-delimited fields; unknown fields are skipped, as protobuf does), checked against records
made by ``aws-kinesis-agg`` (``tests/data/kpl``). That library is not used to read: it
rewrites ``sys.path`` when imported, and it passes a bad aggregate on as a plain record (a bad
MD5 or protobuf) or drops its remaining user records with a line on stderr (a bad index),
where here a bad aggregate is a poison record whose reason names KPL.
"""

from __future__ import annotations

import hashlib
import logging
from typing import NamedTuple

from tq_aws.errors import CodecError

logger = logging.getLogger(__name__)

MAGIC = b"\xf3\x89\x9a\xc2"
"""The first four bytes of an aggregated record."""
DIGEST_SIZE = 16
"""The MD5 digest that ends an aggregated record."""
KPL_MALFORMED = "kpl_malformed"
"""The poison reason of an aggregated record that cannot be read (bad MD5 or protobuf)."""


class UserRecord(NamedTuple):
    """One user record of an aggregated record."""

    sub_sequence: int
    """Its index in the aggregate (the KCL's ``subSequenceNumber``)."""
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


def is_aggregated(data: bytes) -> bool:
    """Whether ``data`` starts like an aggregated record (the magic bytes)."""
    return data[:4] == MAGIC


def deaggregate(data: bytes) -> list[UserRecord]:
    """The user records of an aggregated record, in order.

    Raises:
        CodecError: ``reason="kpl_malformed"``: the digest does not match, the protobuf does
            not parse, or a record names a key outside the tables.
    """
    if not is_aggregated(data):
        raise _malformed("it does not start with the KPL magic bytes f3 89 9a c2")
    body, digest = data[len(MAGIC) : -DIGEST_SIZE], data[-DIGEST_SIZE:]
    if len(data) < len(MAGIC) + DIGEST_SIZE or hashlib.md5(body).digest() != digest:
        raise _malformed("its MD5 digest does not match its protobuf bytes")
    keys: list[str] = []
    hash_keys: list[str] = []
    raw_records: list[bytes] = []
    try:
        for number, value in _fields(body):
            if number == 1:
                keys.append(_text(value))
            elif number == 2:
                hash_keys.append(_text(value))
            elif number == 3:
                raw_records.append(_bytes(value))
        out = []
        for index, raw in enumerate(raw_records):
            out.append(_user_record(index, raw, keys, hash_keys))
    except _WireError as exc:
        raise _malformed(f"its protobuf AggregatedRecord does not parse: {exc}") from None
    return out


def _user_record(index: int, raw: bytes, keys: list[str], hash_keys: list[str]) -> UserRecord:
    key_index: int | None = None
    hash_index: int | None = None
    payload: bytes | None = None
    for number, value in _fields(raw):
        if number == 1:
            key_index = _int(value)
        elif number == 2:
            hash_index = _int(value)
        elif number == 3:
            payload = _bytes(value)
    if key_index is None or payload is None:
        raise _WireError(f"record {index} lacks its partition_key_index or data")
    if key_index >= len(keys):
        raise _WireError(
            f"record {index} names partition key {key_index} of a table of {len(keys)}"
        )
    hash_key = None
    if hash_index is not None:
        if hash_index >= len(hash_keys):
            raise _WireError(
                f"record {index} names explicit hash key {hash_index} of a table of "
                f"{len(hash_keys)}"
            )
        hash_key = hash_keys[hash_index]
    return UserRecord(index, keys[key_index], hash_key, payload)


# -- protobuf wire format --------------------------------------------------------------------


class _WireError(ValueError):
    """Bytes that are not protobuf as the AggregatedRecord message expects."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise _WireError("a varint runs past the end")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise _WireError("a varint is longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` pairs: an int for varints, bytes for length-delimited fields;
    fixed-width fields (never in this message) are skipped."""
    out: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == 0:
            value, at = _varint(data, at)
            out.append((number, value))
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise _WireError(f"field {number} runs past the end")
            out.append((number, data[at : at + size]))
            at += size
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise _WireError(f"field {number} has wire type {wire}")
        if at > len(data):
            raise _WireError(f"field {number} runs past the end")
    return out


def _int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise _WireError("an index is not a varint")
    return value


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise _WireError("a string or message field is a varint")
    return value


def _text(value: int | bytes) -> str:
    try:
        return _bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _WireError(f"a key is not UTF-8: {exc}") from None


def _malformed(why: str) -> CodecError:
    return CodecError(f"KPL aggregated record: {why}", reason=KPL_MALFORMED)


__all__ = [
    "DIGEST_SIZE",
    "KPL_MALFORMED",
    "MAGIC",
    "UserRecord",
    "deaggregate",
    "is_aggregated",
]
