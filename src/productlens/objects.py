"""Object storage: input files and the raw lake at `s3://bucket/key` URLs.

One mechanism serves the whole project: PyArrow's S3 file system (the AWS SDK that
PyArrow ships) does the listing, reading, copying and deleting, and DuckDB reads and
writes the same objects through fsspec's wrapper of that file system, registered on each
DuckDB connection the composition root opens (DuckDB's own `httpfs` extension cannot be
installed everywhere). The composition root builds the one `ObjectStore` from the
project file and the standard AWS environment; nothing here reads either.

`ObjectPath` is an object (or a prefix) with the slice of pathlib's API that ingestion
uses on its files, so a file is a `FilePath`: a local `Path` or an `ObjectPath`, and its
name in lineage and the quarantine is its URL.
"""

from __future__ import annotations

import errno
import fnmatch
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
from fsspec.implementations.arrow import ArrowFSWrapper

from productlens.errors import StorageError

SCHEME = "s3://"
GLOB_CHARS = frozenset("*?[")


def is_url(text: str) -> bool:
    """Whether a path names an object in storage (`s3://...`) rather than a local file."""
    return text.startswith(SCHEME)


@dataclass(frozen=True)
class S3Settings:
    """Where the store is and who we are. Credentials come from the environment only
    (None: the AWS SDK's own chain: profile, instance role)."""

    endpoint: str | None = None  # http(s)://host:port of an S3-compatible server
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


class ObjectStore:
    """An S3-compatible store. Its file system is made on first use, so a project that
    never names an `s3://` URL never starts the AWS SDK."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings

    @cached_property
    def fs(self) -> pafs.S3FileSystem:
        s = self.settings
        options: dict[str, Any] = {
            "region": s.region or "us-east-1",
            # Fail in seconds, not minutes, when the endpoint is wrong.
            "connect_timeout": 5,
            "request_timeout": 30,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        }
        if s.access_key and s.secret_key:
            options.update(
                access_key=s.access_key, secret_key=s.secret_key, session_token=s.session_token
            )
        if s.endpoint:
            parts = urlsplit(s.endpoint if "://" in s.endpoint else f"https://{s.endpoint}")
            options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
        return pafs.S3FileSystem(**options)

    @property
    def where(self) -> str:
        """The store, for messages: its endpoint (never a credential)."""
        return self.settings.endpoint or "AWS S3"

    def path(self, url: str) -> ObjectPath:
        """The object (or prefix) at an `s3://bucket/key` URL."""
        if not is_url(url):
            raise ValueError(f"not an object URL: {url!r}")
        key = url.removeprefix(SCHEME).strip("/")
        if not key:
            raise StorageError("the URL names no bucket", path=url)
        return ObjectPath(self, posixpath.normpath(key))

    def for_duckdb(self) -> ArrowFSWrapper:
        """This store as an fsspec file system, for DuckDB's `register_filesystem`."""
        return _DuckDBFileSystem(self)

    def failed(self, action: str, url: str, exc: OSError) -> StorageError:
        """An error of the store as one line naming the object, the store and the reason."""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StorageError(
            f"cannot {action} in object storage at {self.where}: {reason} (check the "
            "bucket, AWS_ENDPOINT_URL and the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "credentials)",
            path=url,
        )


class _DuckDBFileSystem(ArrowFSWrapper):  # type: ignore[misc]  # fsspec is untyped
    """fsspec's wrapper of the store's PyArrow file system, under the `s3` protocol."""

    protocol = "s3"
    cachable = False  # one per store: fsspec would otherwise share instances by arguments

    def __init__(self, store: ObjectStore) -> None:
        super().__init__(_Deferred(store))


class _Deferred:
    """The store's file system, made when first used (not when DuckDB is handed it)."""

    type_name = "s3"  # what ArrowFSWrapper asks before any use

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store.fs, name)


@dataclass(frozen=True, eq=True)
class ObjectPath:
    """An object or prefix `bucket/key` in a store, with pathlib's API where ingestion
    needs it. A listed object remembers that it is a file (no request to ask again)."""

    store: ObjectStore = field(compare=False, repr=False)
    key: str
    listed_file: bool = field(default=False, compare=False, repr=False)

    def __str__(self) -> str:
        return SCHEME + self.key

    def __fspath__(self) -> str:  # not a local path; refuses to be one
        raise TypeError(f"{self} is an object in storage, not a local file")

    # --- pure parts -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> ObjectPath:
        head = posixpath.dirname(self.key)
        return ObjectPath(self.store, head or self.key)

    @property
    def parents(self) -> list[ObjectPath]:
        """The prefixes above this key, nearest first, down to the bucket."""
        parts = self.key.split("/")
        return [ObjectPath(self.store, "/".join(parts[:i])) for i in range(len(parts) - 1, 0, -1)]

    def __truediv__(self, other: str | PurePosixPath) -> ObjectPath:
        return ObjectPath(self.store, posixpath.join(self.key, str(other)))

    def resolve(self) -> ObjectPath:
        return self

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(other.key)

    def as_posix(self) -> str:
        return str(self)

    # --- the store --------------------------------------------------------------------

    def _info(self) -> pafs.FileInfo:
        try:
            return self.store.fs.get_file_info(self.key)
        except OSError as exc:
            raise self.store.failed("look up the object", str(self), exc) from None

    def exists(self) -> bool:
        return self.listed_file or self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.listed_file or self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return not self.listed_file and self._info().type == pafs.FileType.Directory

    @property
    def bucket(self) -> str:
        return self.key.partition("/")[0]

    def check_bucket(self) -> None:
        """Raise a clear error unless this key's bucket exists (and can be reached)."""
        if ObjectPath(self.store, self.bucket)._info().type == pafs.FileType.NotFound:
            raise StorageError(
                f"no bucket {self.bucket!r} in object storage at {self.store.where}",
                path=str(self),
            )

    def files(self) -> list[ObjectPath]:
        """Every object under this prefix, in key order."""
        selector = pafs.FileSelector(self.key, recursive=True, allow_not_found=True)
        try:
            infos = self.store.fs.get_file_info(selector)
        except OSError as exc:
            raise self.store.failed("list the objects", str(self), exc) from None
        return sorted(
            ObjectPath(self.store, i.path, listed_file=True)
            for i in infos
            if i.type == pafs.FileType.File
        )

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        """The objects under this prefix whose key below it matches `pattern`."""
        for f in self.files():
            if pattern in ("*", "**/*") or fnmatch.fnmatch(str(f.relative_to(self)), pattern):
                yield f

    def glob_matches(self) -> list[ObjectPath]:
        """The objects this key matches as a pattern (`*` and `?` match across `/`, as
        S3 keys have no folders), under the prefix before its first pattern character."""
        first = min(i for i, c in enumerate(self.key) if c in GLOB_CHARS)
        prefix = self.key[:first].rpartition("/")[0]
        if not prefix:
            raise StorageError("a pattern cannot stand in the bucket's name", path=str(self))
        return [
            f for f in ObjectPath(self.store, prefix).files() if fnmatch.fnmatch(f.key, self.key)
        ]

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    def open(self, mode: str = "rb") -> pa.NativeFile:
        """Read an object (`rb`), or write a new one (`wb`, `xb`): S3 shows an object only
        once it is whole, so a failed write leaves nothing behind."""
        try:
            if mode == "rb":
                return self.store.fs.open_input_file(self.key)
            if mode == "xb" and self.exists():
                raise FileExistsError(errno.EEXIST, "the object exists", str(self))
            if mode in ("wb", "xb"):
                return self.store.fs.open_output_stream(self.key)
        except FileExistsError:
            raise
        except OSError as exc:
            raise self.store.failed("open the object", str(self), exc) from None
        raise ValueError(f"unsupported mode {mode!r}")

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        try:
            self.store.fs.delete_file(self.key)
        except OSError as exc:
            raise self.store.failed("delete the object", str(self), exc) from None

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: S3 has no folders, only keys."""

    def remove_tree(self) -> None:
        """Delete every object under this prefix."""
        try:
            self.store.fs.delete_dir_contents(self.key, missing_dir_ok=True)
        except OSError as exc:
            raise self.store.failed("delete the objects", str(self), exc) from None


FilePath = Path | ObjectPath


def input_stream(path: FilePath, compression: str | None) -> pa.NativeFile:
    """A file's bytes, decompressed, as a stream."""
    if isinstance(path, Path):
        return pa.input_stream(str(path), compression=compression)
    return pa.CompressedInputStream(path.open(), compression) if compression else path.open()


def relative_to(path: FilePath, base: FilePath) -> str:
    """A path below `base`, as a relative POSIX path (both local, or both in a store)."""
    if isinstance(path, Path) and isinstance(base, Path):
        return path.relative_to(base).as_posix()
    if isinstance(path, ObjectPath) and isinstance(base, ObjectPath):
        return path.relative_to(base).as_posix()
    raise ValueError(f"{path} is not below {base}")


def copy_file(source: FilePath, target: FilePath) -> None:
    """Copy a file (local or an object) to an object in storage, byte for byte (within
    one store, by the store itself: S3's CopyObject)."""
    same_store = isinstance(target, ObjectPath) and getattr(source, "store", None) is target.store
    if isinstance(source, ObjectPath) and isinstance(target, ObjectPath) and same_store:
        if target.exists():
            raise FileExistsError(errno.EEXIST, "the object exists", str(target))
        try:
            source.store.fs.copy_file(source.key, target.key)
        except OSError as exc:
            raise source.store.failed("copy the object", str(source), exc) from None
        return
    with source.open("rb") as src, target.open("xb") as dst:
        while chunk := src.read(1 << 24):
            dst.write(chunk)
