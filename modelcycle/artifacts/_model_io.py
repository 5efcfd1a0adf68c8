"""Model files: one skops file per fitted Pipeline, reproducible to the byte, checked on load.

skops is used instead of pickle/joblib so that loading a file cannot run arbitrary code: only
the types listed in `TRUSTED_TYPES` (plus skops's own defaults) may be constructed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from modelcycle.errors import ArtifactStoreError, IntegrityError, ModelcycleError

# Types a fitted scikit-learn Pipeline needs beyond what skops trusts by default. Derived by
# fitting Pipeline(ColumnTransformer(SimpleImputer, StandardScaler, OneHotEncoder), estimator)
# for LogisticRegression, SGDClassifier/Regressor, Ridge, LinearRegression, RandomForest*,
# GradientBoosting*, HistGradientBoosting*, DecisionTree* (binary, string and multiclass
# targets, several losses) and collecting `skops.io.get_untrusted_types` (skops 0.15/0.16,
# scikit-learn 1.9). tests/test_model_io.py re-derives it so an upgrade that needs more fails
# there, not in serving.
# The two tree types are untrusted by skops because a *crafted* file can make predict() read
# out of bounds; modelcycle only loads files whose SHA-256 matches the registry record.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)

_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_SCHEMA = "schema.json"
# Immutable values: whether two are one object depends on interning and caching, not on the
# model, so their ids are dropped (skops then builds each occurrence separately).
_VALUE_LOADERS = frozenset({"JsonNode", "DTypeNode"})


def __getattr__(name: str) -> Any:
    """`sio` on first use: importing skops.io imports scikit-learn (seconds), which readers of
    the registry and the store (every `modelcycle` command, each process of a promotion race)
    never need."""
    if name == "sio":
        import skops.io

        return skops.io
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UntrustedModelError(ModelcycleError):
    """A model file holds types nobody allowed; loading it could construct arbitrary objects."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256, the form the registry and manifests record."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path_or_url: str | Path) -> str:
    """Hash a local file or fsspec URL in chunks, so large models never sit whole in memory."""
    digest = hashlib.sha256()
    try:
        with fsspec.open(str(path_or_url), "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ArtifactStoreError(f"{path_or_url}: no such file to hash") from exc
    return digest.hexdigest()


def dump_model(pipeline: Any) -> bytes:
    """Serialise with skops, then normalise the zip so equal models give equal bytes.

    skops names array files and object ids after `id()` of live objects (and uses uuid4 for
    raw bytes), and stamps the current time on every zip entry, so two dumps of the same
    object differ. Ids and file names are renumbered in schema order, entries sorted, dates
    fixed and compression off (deflate output depends on the zlib build). Tree models also
    store structured arrays whose padding bytes are uninitialised memory; those are zeroed.
    """
    import skops.io as sio

    raw = sio.dumps(pipeline)
    with zipfile.ZipFile(io.BytesIO(raw)) as src:
        schema = json.loads(src.read(_SCHEMA))
        renames = _renumber(schema)
        members = {name: src.read(name) for name in src.namelist() if name != _SCHEMA}
    unknown = sorted(set(members) - set(renames))
    if unknown:
        raise ModelcycleError(f"skops wrote files its schema does not reference: {unknown}")
    entries = {renames[name]: _normalise_member(name, data) for name, data in members.items()}
    entries[_SCHEMA] = json.dumps(schema, indent=2).encode("utf-8")
    return _write_zip(entries)


def _renumber(schema: dict[str, Any]) -> dict[str, str]:
    """Replace `__id__` values and file names by their order of first appearance, in place.

    Key order is kept: skops resolves a repeated object by the first occurrence of its id.
    Returns the old-to-new file name mapping.
    """
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("__loader__") in _VALUE_LOADERS:
            node.pop("__id__", None)
        elif "__loader__" in node:
            if isinstance(node.get("__id__"), int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str):
                old = node["file"]
                new = files.setdefault(old, f"{len(files) + 1:06d}{Path(old).suffix}")
                node["file"] = new
        for value in node.values():
            visit(value)

    visit(schema)
    return files


def _normalise_member(name: str, data: bytes) -> bytes:
    if name.endswith(".npy"):
        return _normalise_npy(data)
    if name.endswith(".npz"):  # scipy sparse: a zip inside the zip, with its own timestamps
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            members = {n: _normalise_member(n, inner.read(n)) for n in inner.namelist()}
        return _write_zip(members)
    return data


def _normalise_npy(data: bytes) -> bytes:
    """Re-save structured arrays with zeroed padding; other arrays are already reproducible."""
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.dtype.names is None:
        return data
    buffer = io.BytesIO()
    np.save(buffer, _zero_padding(array), allow_pickle=False)
    return buffer.getvalue()


def _zero_padding(array: np.ndarray) -> np.ndarray:
    """Copy field by field into zeroed memory: padding bytes are never copied, so stay zero."""
    if array.dtype.names is None:
        return array
    clean = np.zeros(array.shape, dtype=array.dtype)
    for name in array.dtype.names:
        clean[name] = _zero_padding(array[name])
    return clean


def _write_zip(entries: dict[str, bytes]) -> bytes:
    """A zip whose bytes depend only on the entries' names and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as out:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # otherwise 0 on Windows
            info.external_attr = 0o644 << 16
            out.writestr(info, entries[name])
    return buffer.getvalue()


def load_model(
    location: str | Path, expected_sha256: str, extra_trusted: Sequence[str] = ()
) -> Any:
    """Load a model file only if it is the exact file the registry recorded.

    The hash is checked before skops parses anything, so a swapped or corrupted file is
    never even opened as a zip.
    """
    expected = expected_sha256.strip().lower()
    if not _SHA256.match(expected):
        raise IntegrityError(
            f"{location}: expected SHA-256 must be 64 hex characters, got {expected_sha256!r}"
        )
    data = _read_bytes(str(location))
    actual = sha256_bytes(data)
    if actual != expected:
        raise IntegrityError(
            f"{location}: SHA-256 is {actual} but the registry recorded {expected}; "
            "refusing to load a model file that changed after registration"
        )
    trusted = [*TRUSTED_TYPES, *extra_trusted]
    untrusted = _untrusted_types(data, trusted, location)
    if untrusted:
        raise UntrustedModelError(
            f"{location}: refusing to load, the file holds types that are not trusted: "
            f"{', '.join(untrusted)}. Pass them in extra_trusted only if you know the code."
        )
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return sio.loads(data, trusted=trusted)
    except UntrustedTypesFoundException as exc:  # skops found one we missed: still refuse
        raise UntrustedModelError(f"{location}: refusing to load: {exc}") from exc


def _read_bytes(location: str) -> bytes:
    try:
        with fsspec.open(location, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ArtifactStoreError(f"{location}: model file not found") from exc


def _untrusted_types(data: bytes, trusted: Sequence[str], location: str | Path) -> list[str]:
    """Audit before constructing, so the message lists every offending type at once."""
    try:
        import skops.io as sio

        found = sio.get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ModelcycleError(f"{location}: not a readable skops model file ({exc})") from exc
    allowed = set(trusted)
    return [name for name in found if name not in allowed]


def load_compiled(data: bytes, expected_sha256: str, location: str) -> Any:
    """A compiled form (`training.CompiledModel`) from bytes, parsed only once their SHA-256
    equals the one recorded for them: the runtime's own parser is not trusted with a file
    nobody vouched for, pickle or not."""
    from modelcycle.training import CompiledModel

    actual = sha256_bytes(data)
    if actual != expected_sha256.lower():
        raise IntegrityError(
            f"{location}: SHA-256 is {actual} but {expected_sha256} was recorded; refusing to "
            "load the compiled form"
        )
    return CompiledModel.from_verified_bytes(data)
