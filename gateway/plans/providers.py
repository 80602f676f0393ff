"""Where plan snapshots come from: a file (plans as code) or the admin API over HTTP.

A provider answers one question — "has the snapshot changed since the version I hold?" — and
returns the raw document bytes when it has. Parsing and compiling belong to the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from gateway.plans.document import Fetched

SNAPSHOT_PATH = "/internal/v1/snapshot"


class ProviderError(Exception):
    """The snapshot could not be fetched (unreachable, bad status, unreadable file)."""


class SnapshotProvider(Protocol):
    description: str

    async def fetch(self, etag: str | None) -> Fetched | None:
        """Return the document, or None when it is unchanged since ``etag``."""
        ...

    async def close(self) -> None: ...


class FileProvider:
    """A snapshot file; its content digest is the ETag.

    All file work runs in a worker thread. The file is read and hashed only when its size,
    modification time or inode changed since the last read, so a large unchanged file costs
    one ``stat`` a refresh.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.description = f"file:{self.path}"
        # (size, mtime, inode) and content digest of the last read
        self._seen: tuple[tuple[int, int, int], str] | None = None

    async def fetch(self, etag: str | None) -> Fetched | None:
        try:
            read = await asyncio.to_thread(self._read_if_changed, etag)
        except OSError as exc:
            raise ProviderError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if read is None:
            return None
        content, digest = read
        return Fetched(content, digest, yaml=self.path.suffix.lower() in (".yaml", ".yml"))

    def _read_if_changed(self, etag: str | None) -> tuple[bytes, str] | None:
        """The content and its digest, or None when it is known or found to match ``etag``."""
        stat = self.path.stat()
        identity = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if self._seen == (identity, etag):
            return None
        content = self.path.read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        self._seen = (identity, digest)
        return None if digest == etag else (content, digest)

    async def close(self) -> None:
        return None


class HttpProvider:
    def __init__(self, url: str, token: str = "", timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/") + SNAPSHOT_PATH if parts.path in ("", "/") else url
        self.description = self.url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, etag: str | None) -> Fetched | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = dict(self._headers)
        if etag:
            headers["If-None-Match"] = etag
        try:
            async with self._session.get(self.url, headers=headers) as resp:
                if resp.status == 304:
                    return None
                if resp.status in (401, 403):
                    raise ProviderError(
                        f"GET {self.url} answered {resp.status}: plans.token must be one of "
                        "the admin side's admin.snapshot_tokens (or admin.tokens)"
                    )
                if resp.status != 200:
                    raise ProviderError(f"GET {self.url} answered {resp.status}")
                content = await resp.read()
                return Fetched(content, resp.headers.get("ETag", ""))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"GET {self.url} failed: {exc!r}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def provider_from_source(source: str, token: str = "") -> SnapshotProvider:
    if source.startswith("file:"):
        return FileProvider(source[len("file:") :])
    if source.startswith(("http://", "https://")):
        return HttpProvider(source, token)
    raise ValueError(f"unsupported plans.source {source!r}")
