"""Memory blob store (the claim-check port)."""

from __future__ import annotations


class MemoryBlobStore:
    """Blobs by key; the reference is ``memory://<key>``."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    async def put(self, key: str, data: bytes) -> str:
        self._blobs[key] = bytes(data)
        return f"memory://{key}"

    async def get(self, ref: str) -> bytes:
        if not ref.startswith("memory://"):
            raise KeyError(f"not a memory blob reference: {ref!r}")
        return self._blobs[ref.removeprefix("memory://")]
