"""The artifact store: one folder per run, complete with its manifest or absent.

A run writes into a hidden staging folder and only becomes visible under its final
name once every file is written and `manifest.json` (written last) lists their
SHA-256 and sizes. A crash at any point leaves at most a staging folder or, on
object stores, a folder without a manifest; neither is ever listed as a run.

A run that must also be registered commits with a `pending-registration.json` marker and is
listed only once the registry's row exists and `confirm_registered` removed the marker, so a
kill between the two never leaves a complete-looking folder without its registry row. The next
run reconciles: it confirms folders whose row exists, marks the others orphaned (kept, never
listed: the registry it was checked against may not be the only one using this store), and
removes staging folders of killed writers once they are older than `stale_after` and, locally,
no live writer holds their lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import posixpath
import re
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

import fsspec
from fsspec.core import url_to_fs

from modelcycle.artifacts._model_io import sha256_bytes
from modelcycle.errors import ArtifactStoreError, IntegrityError

try:
    import fcntl
except ImportError:  # not POSIX: staging is judged by age alone
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "modelcycle-run/1"
STAGING_PREFIX = ".staging-"
PENDING_NAME = "pending-registration.json"
# A staging folder or an unregistered run folder this old belongs to a dead run: a live writer
# adds files every few seconds, and a run registers within milliseconds of committing.
STALE_AFTER_SECONDS = 3600.0
RESERVED_KEYS = frozenset({"format", "model", "run_id", "created_at", "files"})

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_CHUNK = 1 << 20


def _check_segment(kind: str, value: str) -> str:
    """One path segment we can join without escaping the store or hiding the folder."""
    ok = (
        isinstance(value, str)
        and len(value) <= 255
        and _SEGMENT.fullmatch(value) is not None
        and value not in {".", ".."}
        and not value.startswith(".")
    )
    if not ok:
        raise ArtifactStoreError(
            f"{kind} {value!r} is not a safe folder name: use letters, digits, '-', '_' "
            "and '.', not starting with '.'"
        )
    return value


def _check_name(name: str) -> str:
    """A file name relative to the run folder; sub-folders allowed, escaping it is not."""
    if not isinstance(name, str) or not name:
        raise ArtifactStoreError(f"file name {name!r} must be a non-empty string")
    segments = name.split("/")
    for segment in segments:
        if not segment or segment in {".", ".."} or not _SEGMENT.fullmatch(segment):
            raise ArtifactStoreError(
                f"file name {name!r} is not safe: use '/'-separated parts made of letters, "
                "digits, '-', '_' and '.', with no empty, '.' or '..' part"
            )
    if name in {MANIFEST_NAME, PENDING_NAME}:
        raise ArtifactStoreError(f"{name!r} is written by commit(), not by the caller")
    return name


def _dump_json(obj: Any, what: str) -> bytes:
    """Same object, same bytes: sorted keys and fixed indentation."""
    try:
        text = json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ArtifactStoreError(f"{what}: cannot be written as JSON: {exc}") from exc
    return (text + "\n").encode("utf-8")


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


@dataclass(frozen=True)
class RunFolder:
    """A committed run: where it lives and what its manifest says."""

    model: str
    run_id: str
    uri: str
    manifest: dict[str, Any] = field(repr=False)
    # SHA-256 of manifest.json as written: the registry records it, so a manifest edited
    # later (its config, or a file's hash next to an edited file) is refused when read.
    manifest_sha256: str = ""


@dataclass(frozen=True)
class Reconciliation:
    """What one pass over a model's folder found and did."""

    confirmed: tuple[str, ...] = ()  # registered while their marker was left behind: now listed
    orphaned: tuple[str, ...] = ()  # committed, no registry row after `stale_after`: marked
    removed_staging: tuple[str, ...] = ()  # staging folders of dead writers: removed


class ArtifactStore:
    """Run folders under `root`, a local path or any fsspec URL (`memory://`, `s3://`, ...)."""

    def __init__(
        self,
        root: str | Path,
        storage_options: Mapping[str, Any] | None = None,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self.root = str(root)
        self.stale_after = stale_after
        self.storage_options = dict(storage_options or {})
        fs, path = url_to_fs(self.root, **self.storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self._root_path: str = path.rstrip("/") or "/"
        self.is_local = _is_local(fs)

    @classmethod
    def holding(
        cls, run_uri: str, storage_options: Mapping[str, Any] | None = None
    ) -> ArtifactStore:
        """The store a run folder belongs to, for readers that only know the folder's URI (what
        the registry records), so they read through the same checks as everyone else."""
        model_folder = posixpath.dirname(str(run_uri).rstrip("/"))
        return cls(posixpath.dirname(model_folder), storage_options)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # -- paths -----------------------------------------------------------------

    def _model_path(self, model: str) -> str:
        return posixpath.join(self._root_path, _check_segment("model", model))

    def _run_path(self, model: str, run_id: str) -> str:
        return posixpath.join(self._model_path(model), _check_segment("run_id", run_id))

    def _uri(self, path: str) -> str:
        """Local stores answer with a plain path so that non-fsspec code can use it."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def run_uri(self, model: str, run_id: str) -> str:
        """Where the run's folder is (or would be once committed)."""
        return self._uri(self._run_path(model, run_id))

    def file_uri(self, model: str, run_id: str, name: str) -> str:
        """Where one file of a run is, e.g. to record in the registry."""
        return self._uri(posixpath.join(self._run_path(model, run_id), _check_name(name)))

    # -- writing ---------------------------------------------------------------

    def open_run(self, model: str, run_id: str) -> RunWriter:
        """Start writing a run; refused at once if the run already exists."""
        final = self._run_path(model, run_id)
        if self.fs.exists(final):
            raise ArtifactStoreError(
                f"run folder {self._uri(final)} already exists; run ids are never reused"
            )
        self.remove_stale_staging(model)
        # A per-writer token keeps two writers (or a retry after a hard kill) from
        # sharing one staging folder.
        staging_name = f"{STAGING_PREFIX}{run_id}-{uuid.uuid4().hex[:12]}"
        staging = posixpath.join(self._model_path(model), staging_name)
        return RunWriter(self, model, run_id, staging, final)

    # -- reading ---------------------------------------------------------------

    def list_runs(self, model: str) -> list[str]:
        """Committed runs only: a folder without a manifest, in staging, or still waiting for
        its registry row is not a run."""
        return sorted(r for r in self._committed(model) if not self._has_marker(model, r))

    def unconfirmed_runs(self, model: str) -> dict[str, dict[str, Any]]:
        """Committed folders still carrying their registration marker, with what it says."""
        found = {}
        for run_id in self._committed(model):
            marker = self._read_marker(model, run_id)
            if marker is not None:
                found[run_id] = marker
        return found

    def _committed(self, model: str) -> list[str]:
        model_path = self._model_path(model)
        if not self.fs.isdir(model_path):
            return []
        runs = []
        for entry in self.fs.ls(model_path, detail=True):
            name = posixpath.basename(entry["name"].rstrip("/"))
            if entry["type"] != "directory" or name.startswith("."):
                continue
            if self.fs.isfile(posixpath.join(model_path, name, MANIFEST_NAME)):
                runs.append(name)
        return runs

    def _marker_path(self, model: str, run_id: str) -> str:
        return posixpath.join(self._run_path(model, run_id), PENDING_NAME)

    def _has_marker(self, model: str, run_id: str) -> bool:
        return bool(self.fs.isfile(self._marker_path(model, run_id)))

    def _read_marker(self, model: str, run_id: str) -> dict[str, Any] | None:
        try:
            raw = self.fs.cat_file(self._marker_path(model, run_id))
        except FileNotFoundError:
            return None
        try:
            marker = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            marker = None
        # An unreadable marker still means "not confirmed": it is reported, never trusted.
        return marker if isinstance(marker, dict) else {"state": "unreadable"}

    # -- registration and reconciliation ----------------------------------------

    def confirm_registered(self, model: str, run_id: str) -> None:
        """The registry holds this run's row: remove the marker, so the folder is a run.

        Idempotent; refused for a folder that was never committed.
        """
        self.read_manifest(model, run_id)
        path = self._marker_path(model, run_id)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)
        if self.is_local:
            _fsync_dir(self._run_path(model, run_id))

    def reconcile(
        self, model: str, registered: Collection[str], now: float | None = None
    ) -> Reconciliation:
        """Settle what killed runs left: confirm folders whose run id is `registered`, mark
        unregistered ones orphaned once their marker is older than `stale_after`, and remove
        stale staging. Never deletes a committed folder: a store can outlive or be shared by
        more than one registry, and a folder is cheap next to a model nobody can trace."""
        now = time.time() if now is None else now
        confirmed, orphaned = [], []
        for run_id, marker in sorted(self.unconfirmed_runs(model).items()):
            if run_id in registered:
                self.confirm_registered(model, run_id)
                confirmed.append(run_id)
            elif marker.get("state") == "pending" and self._marker_age(model, run_id, now) > (
                self.stale_after
            ):
                self._mark_orphaned(model, run_id, marker, now)
                orphaned.append(run_id)
        removed = self.remove_stale_staging(model, now)
        return Reconciliation(tuple(confirmed), tuple(orphaned), tuple(removed))

    def _marker_age(self, model: str, run_id: str, now: float) -> float:
        """Seconds since the marker was written; unknown counts as new (never stale)."""
        try:
            changed = _timestamp(self.fs.info(self._marker_path(model, run_id)))
        except FileNotFoundError:
            return 0.0
        return 0.0 if changed is None else now - changed

    def _mark_orphaned(self, model: str, run_id: str, marker: dict[str, Any], now: float) -> None:
        updated = {
            **marker,
            "state": "orphaned",
            "orphaned_at": datetime.fromtimestamp(now, UTC).isoformat(),
            "note": "no registry row for this run was found after the process that committed "
            "it ended; it is not a model version and is never listed as a run",
        }
        _replace_file(self.fs, self.is_local, self._marker_path(model, run_id), updated)
        logger.warning(
            "run folder %s has no registry row: marked orphaned", self.run_uri(model, run_id)
        )

    def remove_stale_staging(self, model: str, now: float | None = None) -> list[str]:
        """Remove staging folders of dead writers: older than `stale_after` (newest file) and,
        on a local store, not locked by a live writer. Best effort: another run may be removing
        the same folder."""
        model_path = self._model_path(model)
        if not self.fs.isdir(model_path):
            return []
        now = time.time() if now is None else now
        removed = []
        for entry in self.fs.ls(model_path, detail=True):
            path = entry["name"].rstrip("/")
            name = posixpath.basename(path)
            if entry["type"] != "directory" or not name.startswith(STAGING_PREFIX):
                continue
            newest = _newest_change(self.fs, path)
            if newest is None or now - newest <= self.stale_after:
                continue
            if self.is_local and _held_by_live_writer(path):
                continue
            try:
                self.fs.rm(path, recursive=True)
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning("stale staging %s not removed: %s", path, exc)
                continue
            logger.info("removed staging folder of a dead run: %s", path)
            removed.append(name)
        return removed

    def read_manifest(
        self, model: str, run_id: str, expected_sha256: str | None = None
    ) -> dict[str, Any]:
        """The manifest of a committed run, checked to be ours and about this run.

        With `expected_sha256` (what the registry recorded when the run was registered) the
        manifest's own bytes must match it: the manifest vouches for every other file, so an
        edited manifest would otherwise vouch for edited files.
        """
        path = posixpath.join(self._run_path(model, run_id), MANIFEST_NAME)
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ArtifactStoreError(
                f"{self._uri(path)}: no manifest; run {model}/{run_id} was never committed"
            ) from exc
        if expected_sha256 is not None and sha256_bytes(raw) != expected_sha256:
            raise IntegrityError(
                f"{self._uri(path)}: SHA-256 is {sha256_bytes(raw)} but the registry recorded "
                f"{expected_sha256}: the manifest was changed after registration"
            )
        try:
            manifest = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactStoreError(f"{self._uri(path)}: not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ArtifactStoreError(f"{self._uri(path)}: expected format {MANIFEST_FORMAT!r}")
        if manifest.get("model") != model or manifest.get("run_id") != run_id:
            raise ArtifactStoreError(
                f"{self._uri(path)}: manifest is for {manifest.get('model')!r}/"
                f"{manifest.get('run_id')!r}, not {model!r}/{run_id!r}"
            )
        files = manifest.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
            for entry in files.values()
        ):
            raise ArtifactStoreError(
                f"{self._uri(path)}: 'files' must map names to {{'sha256': str, 'size': int}}"
            )
        return manifest

    def verify(self, model: str, run_id: str) -> list[str]:
        """Every way the folder differs from its manifest; empty means intact."""
        manifest = self.read_manifest(model, run_id)
        folder = self._run_path(model, run_id)
        actual = _list_files(self.fs, folder)
        problems = []
        for name, expected in sorted(manifest["files"].items()):
            if name not in actual:
                problems.append(f"{name}: missing")
                continue
            problem = _difference(expected, *_hash_file(self.fs, actual[name]))
            if problem is not None:
                problems.append(f"{name}: {problem}")
        for name in sorted(set(actual) - set(manifest["files"]) - {MANIFEST_NAME, PENDING_NAME}):
            problems.append(f"{name}: present but not listed in the manifest")
        return problems

    def read_bytes(self, model: str, run_id: str, name: str) -> bytes:
        """One file of a run, by its name in the manifest."""
        path = posixpath.join(self._run_path(model, run_id), _check_name(name))
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ArtifactStoreError(f"{self._uri(path)}: no such file") from exc

    def read_verified(
        self,
        model: str,
        run_id: str,
        name: str,
        manifest: Mapping[str, Any] | None = None,
        *,
        manifest_sha256: str | None = None,
    ) -> bytes:
        """One file of a run, returned only if it is what the run's manifest recorded and the
        manifest is the one the registry recorded, so nothing downstream (a card, a
        monitoring reference) is built from a file, or a manifest, edited later.

        Give `manifest_sha256` (the registry's record), or a `manifest` already read with it
        (`read_manifest(..., expected_sha256=...)`) to save reading it again. Neither is an
        error: an unanchored manifest proves nothing.
        """
        if manifest is None:
            if manifest_sha256 is None:
                raise ArtifactStoreError(
                    f"{self.file_uri(model, run_id, name)}: refusing an unanchored read; pass "
                    "the manifest SHA-256 the registry recorded for this run"
                )
            manifest = self.read_manifest(model, run_id, manifest_sha256)
        data = self.read_bytes(model, run_id, name)
        expected = manifest["files"].get(name)
        if expected is None or _difference(expected, len(data), sha256_bytes(data)) is not None:
            raise IntegrityError(
                f"{self.file_uri(model, run_id, name)}: SHA-256 does not match the run's "
                "manifest: it was changed after the run"
            )
        return data

    def open_file(self, uri: str) -> IO[bytes]:
        """Open a file by the URI the store handed out, with this store's options."""
        fs, path = url_to_fs(uri, **self.storage_options)
        try:
            return fs.open(path, "rb")
        except FileNotFoundError as exc:
            raise ArtifactStoreError(f"{uri}: no such file") from exc


class RunWriter:
    """Collects one run's files in staging; `commit` publishes them all or nothing.

    Use as a context manager: an exception inside the block, or leaving it without
    `commit()` or `abort()`, removes the staging folder; the latter also raises,
    because a run that silently records nothing would look like a success.
    """

    def __init__(
        self, store: ArtifactStore, model: str, run_id: str, staging: str, final: str
    ) -> None:
        self.store = store
        self.model = model
        self.run_id = run_id
        self._staging = staging
        self._final = final
        self._names: set[str] = set()
        self._state = "open"
        self._manifest_sha256 = ""
        store.fs.makedirs(staging, exist_ok=True)
        # Locally, a lock on the staging folder tells a sweeping run that this writer is alive
        # (the kernel drops it when the process dies, however it dies).
        self._lock = _lock_folder(staging) if store.is_local else None

    def __repr__(self) -> str:
        return f"RunWriter({self.model!r}, {self.run_id!r}, state={self._state!r})"

    @property
    def uri(self) -> str:
        """The folder's address once committed; nothing is there before."""
        return self.store._uri(self._final)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open":
            return
        if exc is not None:
            self._abort_keeping(exc)
            return
        self.abort()
        raise ArtifactStoreError(
            f"run {self.model}/{self.run_id} was left without commit() or abort(); "
            "its files were discarded"
        )

    # -- writing ---------------------------------------------------------------

    def _claim(self, name: str) -> str:
        """Reserve a name once; a file and a folder of the same name cannot coexist."""
        if self._state != "open":
            raise ArtifactStoreError(
                f"run {self.model}/{self.run_id} is {self._state}; cannot write {name!r}"
            )
        _check_name(name)
        if name in self._names:
            raise ArtifactStoreError(f"{name!r} was already written in run {self.run_id}")
        for other in self._names:
            if other.startswith(name + "/") or name.startswith(other + "/"):
                raise ArtifactStoreError(f"{name!r} clashes with {other!r}: a file is not a folder")
        self._names.add(name)
        return posixpath.join(self._staging, name)

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write one file; returns its name as the manifest will list it."""
        path = self._claim(name)
        fs = self.store.fs
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        if self.store.is_local:
            # Exclusive create, flushed to disk before the rename can publish it.
            with open(path, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            fs.pipe_file(path, bytes(data))
        return name

    def write_text(self, name: str, text: str) -> str:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, obj: Any) -> str:
        """Sorted keys and fixed indentation, so equal objects give equal hashes."""
        return self.write_bytes(name, _dump_json(obj, name))

    def write_dataframe_parquet(self, name: str, df: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        df.to_parquet(buffer, engine="pyarrow")
        return self.write_bytes(name, buffer.getvalue())

    def write_figure(self, name: str, fig: Figure) -> str:
        """PNG at a fixed dpi, so a plot's size does not depend on the caller's rcParams."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        return self.write_bytes(name, buffer.getvalue())

    def path_for(self, name: str) -> Path:
        """A real local path for libraries that insist on writing files themselves.

        The file (or folder) at this path must exist by `commit()`; it is hashed from
        what is on disk. Object stores have no such path: write bytes instead.
        """
        if not self.store.is_local:
            raise ArtifactStoreError(
                f"{self.store.root} is not a local store; path_for({name!r}) has no local path, "
                "write the bytes with write_bytes() instead"
            )
        path = self._claim(name)
        self.store.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        return Path(path)

    # -- finishing -------------------------------------------------------------

    def commit(
        self, metadata: Mapping[str, Any] | None = None, *, pending_registration: bool = False
    ) -> RunFolder:
        """Hash what is actually in staging, write the manifest last, then publish.

        On any failure the staging folder is removed and the error raised; the final
        folder is either complete with its manifest or was never created by us. With
        `pending_registration` the folder is published with a marker (outside the manifest)
        and is not listed as a run until `ArtifactStore.confirm_registered`.
        """
        if self._state != "open":
            raise ArtifactStoreError(f"run {self.model}/{self.run_id} is already {self._state}")
        try:
            manifest = self._build_manifest(dict(metadata or {}))
            self._write_manifest(manifest)
            if pending_registration:
                self._write_marker(manifest["created_at"])
            self._publish()
        except BaseException as exc:
            self._abort_keeping(exc)
            raise
        finally:
            self._release()
        self._state = "committed"
        if self.store.fs.exists(self._staging):  # object stores copy, so staging remains
            try:
                self.store.fs.rm(self._staging, recursive=True)
            except Exception as exc:  # the run is committed; the leftover is hidden
                logger.warning(
                    "run %s committed but staging %s not removed: %s", self.uri, self._staging, exc
                )
        return RunFolder(self.model, self.run_id, self.uri, manifest, self._manifest_sha256)

    def abort(self) -> None:
        """Remove staging; safe to call more than once, never touches a committed run."""
        if self._state == "committed":
            raise ArtifactStoreError(f"run {self.model}/{self.run_id} is committed; cannot abort")
        self._state = "aborted"
        if self.store.fs.exists(self._staging):
            self.store.fs.rm(self._staging, recursive=True)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _write_marker(self, committed_at: str) -> None:
        marker = {
            "model": self.model,
            "run_id": self.run_id,
            "state": "pending",
            "committed_at": committed_at,
            "note": "committed, waiting for its registry row; not a run until confirmed",
        }
        path = posixpath.join(self._staging, PENDING_NAME)
        _replace_file(self.store.fs, self.store.is_local, path, marker)

    def _abort_keeping(self, exc: BaseException) -> None:
        """Clean up after `exc` without hiding it behind a cleanup error."""
        try:
            self.abort()
        except Exception as cleanup_exc:
            exc.add_note(f"also failed to remove staging {self._staging}: {cleanup_exc}")

    def _build_manifest(self, metadata: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED_KEYS & metadata.keys())
        if clash:
            raise ArtifactStoreError(f"metadata keys {clash} are reserved for the manifest")
        actual = _list_files(self.store.fs, self._staging)
        missing = sorted(
            n
            for n in self._names
            if n not in actual and not any(a.startswith(n + "/") for a in actual)
        )
        if missing:
            raise ArtifactStoreError(
                f"run {self.model}/{self.run_id}: nothing was written at {missing} "
                "(handed out by path_for)"
            )
        files = {}
        for name, path in sorted(actual.items()):
            size, digest = _hash_file(self.store.fs, path, fsync=self.store.is_local)
            files[name] = {"sha256": digest, "size": size}
        return {
            **metadata,
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "run_id": self.run_id,
            "created_at": datetime.now(UTC).isoformat(),
            "files": files,
        }

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        data = _dump_json(manifest, f"{self.model}/{self.run_id}/{MANIFEST_NAME}")
        self._manifest_sha256 = sha256_bytes(data)
        path = posixpath.join(self._staging, MANIFEST_NAME)
        if self.store.is_local:
            with open(path, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        else:
            self.store.fs.pipe_file(path, data)

    def _publish(self) -> None:
        fs = self.store.fs
        if fs.exists(self._final):
            raise ArtifactStoreError(f"run folder {self.uri} already exists; not overwriting it")
        if self.store.is_local:
            # rename(2) is atomic and refuses a non-empty target, so a concurrent
            # commit of the same run id loses instead of overwriting.
            try:
                os.rename(self._staging, self._final)
            except OSError as exc:
                raise ArtifactStoreError(f"cannot publish run folder {self.uri}: {exc}") from exc
            _fsync_dir(posixpath.dirname(self._final))
        else:
            _copy_manifest_last(fs, self._staging, self._final)


def _replace_file(
    fs: fsspec.AbstractFileSystem, is_local: bool, path: str, obj: dict[str, Any]
) -> None:
    """A small JSON file written whole: locally through a rename, so no reader sees half."""
    data = _dump_json(obj, path)
    if not is_local:
        fs.pipe_file(path, data)
        return
    temporary = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(temporary, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _lock_folder(path: str) -> int | None:
    """An exclusive lock held on the folder's descriptor for as long as the writer lives."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a filesystem without locks: the folder is judged by its age alone
        os.close(fd)
        return None
    return fd


def _held_by_live_writer(path: str) -> bool:
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}
    finally:
        os.close(fd)  # closing drops our own lock, if we got it
    return False


def _timestamp(info: Mapping[str, Any]) -> float | None:
    """Last change of one entry as fsspec reports it (the key differs per filesystem)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None


def _newest_change(fs: fsspec.AbstractFileSystem, folder: str) -> float | None:
    """The newest change anywhere in `folder`; None when the filesystem gives no times."""
    try:
        entries = fs.find(folder, detail=True, withdirs=True)
        entries.setdefault(folder, fs.info(folder))
    except FileNotFoundError:
        return None
    times = [t for t in (_timestamp(info) for info in entries.values()) if t is not None]
    return max(times) if times else None


def _list_files(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, str]:
    """Relative name -> full path for every file below `folder`."""
    prefix = folder.rstrip("/") + "/"
    found = {}
    for path in fs.find(folder):
        if not path.startswith(prefix):
            raise ArtifactStoreError(f"{path}: listed under {folder} but outside it")
        found[path[len(prefix) :]] = path
    return found


def _difference(expected: Mapping[str, Any], size: int, digest: str) -> str | None:
    """How a file differs from its manifest entry, if it does (size first: cheaper to compare)."""
    if size != expected["size"]:
        return f"size {size} bytes, manifest says {expected['size']}"
    if digest != expected["sha256"]:
        return f"SHA-256 {digest}, manifest says {expected['sha256']}"
    return None


def _hash_file(fs: fsspec.AbstractFileSystem, path: str, *, fsync: bool = False) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if fsync:
            _fsync_handle(handle)
    return size, digest.hexdigest()


def _fsync_handle(handle: Any) -> None:
    """Files written by other libraries through path_for reach the disk too."""
    with contextlib.suppress(OSError, AttributeError, io.UnsupportedOperation):
        os.fsync(handle.fileno())


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _copy_manifest_last(fs: fsspec.AbstractFileSystem, staging: str, final: str) -> None:
    """Object stores have no atomic folder rename: copy every file, the manifest last.

    A crash part-way leaves a final folder without a manifest, which is not a run;
    a failure we see removes the copies we made.
    """
    files = _list_files(fs, staging)
    ordered = [*sorted(n for n in files if n != MANIFEST_NAME), MANIFEST_NAME]
    copied: list[str] = []
    try:
        for name in ordered:
            target = posixpath.join(final, name)
            fs.makedirs(posixpath.dirname(target), exist_ok=True)
            fs.copy(files[name], target)
            copied.append(target)
    except BaseException as exc:
        for target in reversed(copied):
            try:
                fs.rm_file(target)
            except Exception as cleanup_exc:
                exc.add_note(f"also failed to remove partial copy {target}: {cleanup_exc}")
        raise


MONITORING_FOLDER = "monitoring"


def monitoring_store(
    run_uri: str, storage_options: Mapping[str, Any] | None = None
) -> ArtifactStore:
    """The store of monitoring evidence beside a training run's store (`<store>/monitoring`),
    for readers that know only a version's run folder."""
    root = posixpath.dirname(posixpath.dirname(str(run_uri).rstrip("/")))
    return ArtifactStore(posixpath.join(root, MONITORING_FOLDER), storage_options)
