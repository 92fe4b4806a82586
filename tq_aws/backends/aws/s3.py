"""BlobStore port on S3 (the claim check): large payloads and results live at
``s3://<bucket>/<prefix><key>`` and records carry only that reference."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from botocore.exceptions import ClientError

from tq_aws.backends.aws.clients import AwsClients, error_code
from tq_aws.errors import BlobNotFoundError, ConfigurationError, InvalidBlobRefError

logger = logging.getLogger(__name__)

DEFAULT_EXPIRE_AFTER_DAYS = 30

_PLAIN_SEGMENT = re.compile(r"[0-9A-Za-z_-][0-9A-Za-z_.=-]{0,127}")


def object_key(key: str) -> str:
    """The S3 object key (below the prefix) of the blob key ``key``: each ``/``-separated
    segment as it is when it is at most 128 letters, digits, ``-``, ``_``, ``.`` or ``=`` not
    starting with a dot (every id the framework makes), else ``~`` and its SHA-256 in hex.

    So a blob key built from any task id (``a#b``, emoji, ``..``) is a plain object key that
    no URL normalises, and two keys never share an object (``~`` is never in a kept segment).
    """
    return "/".join(
        part
        if _PLAIN_SEGMENT.fullmatch(part)
        else "~" + hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()
        for part in key.split("/")
    )


class S3BlobStore:
    """Blobs as S3 objects; the reference is ``s3://<bucket>/<prefix><object_key(key)>``.

    Args:
        bucket: the bucket (create it, with its lifecycle rule, with ``ensure_bucket``).
        clients: AWS clients.
        prefix: key prefix of every blob; the lifecycle rule expires objects under it.

    Example:
        >>> store = S3BlobStore("my-tq-blobs", clients)
        >>> await store.ensure_bucket()
        >>> ref = await store.put("payload/t-1", data)   # 's3://my-tq-blobs/tq/payload/t-1'
        >>> await store.get(ref) == data
        True
    """

    def __init__(self, bucket: str, clients: AwsClients, *, prefix: str = "tq/"):
        if not bucket or "/" in bucket:
            raise ConfigurationError(f"bucket={bucket!r}; give a bucket name (no 's3://', no '/')")
        if prefix.startswith("/"):
            raise ConfigurationError(f"prefix={prefix!r}; give a key prefix without a leading '/'")
        self.bucket = bucket
        self.prefix = prefix
        self.clients = clients

    def ref_for(self, key: str) -> str:
        """The reference ``put(key, ...)`` returns (its object key is ``object_key(key)``)."""
        return f"s3://{self.bucket}/{self.prefix}{object_key(key)}"

    async def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``prefix + key`` (replacing any earlier blob); return its
        reference."""
        if not key:
            raise ConfigurationError("blob key is empty; give a key such as 'payload/<task id>'")
        s3 = await self.clients.get("s3")
        ref = self.ref_for(key)
        await s3.put_object(Bucket=self.bucket, Key=self._key(ref), Body=bytes(data))
        return ref

    async def get(self, ref: str) -> bytes:
        """The bytes at ``ref``.

        Raises:
            InvalidBlobRefError: ``ref`` is not ``s3://<this bucket>/<key>``.
            BlobNotFoundError: nothing is stored there (a ``KeyError``).
        """
        key = self._key(ref)
        s3 = await self.clients.get("s3")
        try:
            response = await s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFoundError(
                    f"no blob at {ref}: never written, or expired by the bucket's lifecycle rule",
                    ref=ref,
                ) from exc
            raise
        async with response["Body"] as body:
            return bytes(await body.read())

    def _key(self, ref: str) -> str:
        if not isinstance(ref, str) or not ref.startswith("s3://"):
            raise InvalidBlobRefError(
                f"blob reference {ref!r} is not an s3:// URI; it must come from this store's put",
                ref=str(ref),
            )
        bucket, _, key = ref.removeprefix("s3://").partition("/")
        if bucket != self.bucket:
            raise InvalidBlobRefError(
                f"blob reference {ref!r} names bucket {bucket!r}; this store reads only "
                f"{self.bucket!r} (configure the store with the bucket the blob was written to)",
                ref=ref,
            )
        if not key:
            raise InvalidBlobRefError(f"blob reference {ref!r} has no object key", ref=ref)
        return key

    async def ensure_bucket(self, *, expire_after_days: int = DEFAULT_EXPIRE_AFTER_DAYS) -> None:
        """Create the bucket if missing, and set a lifecycle rule expiring objects under the
        prefix after ``expire_after_days`` (keep it longer than a task can live: retries plus
        delays). Other lifecycle rules of the bucket are kept. Safe to repeat."""
        if expire_after_days < 1:
            raise ConfigurationError(f"expire_after_days={expire_after_days!r}; give >= 1")
        s3 = await self.clients.get("s3")
        create: dict[str, Any] = {"Bucket": self.bucket}
        region = self.clients.settings.region
        if region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await s3.create_bucket(**create)
        except ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou",):
                raise
        rule_id = f"tq-expire-{self.prefix or 'all'}"
        rules: list[dict[str, Any]] = []
        try:
            current = await s3.get_bucket_lifecycle_configuration(Bucket=self.bucket)
            rules = [r for r in current.get("Rules", []) if r.get("ID") != rule_id]
        except ClientError as exc:
            if error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
        rules.append(
            {
                "ID": rule_id,
                "Filter": {"Prefix": self.prefix},
                "Status": "Enabled",
                "Expiration": {"Days": expire_after_days},
            }
        )
        await s3.put_bucket_lifecycle_configuration(
            Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
        )


__all__ = ["BlobNotFoundError", "InvalidBlobRefError", "S3BlobStore", "object_key"]
