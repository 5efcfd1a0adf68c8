"""What a run records so a model can be traced to its code, packages, config and data."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

GIT_TIMEOUT_SECONDS = 5.0
NOT_INSTALLED = "not installed"

# Distribution names as pip knows them; "python" is filled in separately.
TRACKED_PACKAGES = (
    "modelcycle",
    "prefect",
    "scikit-learn",
    "pandas",
    "numpy",
    "scipy",
    "skops",
    "pyarrow",
    "sqlalchemy",
    "pydantic",
    "fsspec",
    "matplotlib",
)


def _git(args: list[str], cwd: Path) -> str | None:
    """Run git for its output; None on any failure, because lineage must not stop a run."""
    env = {
        k: v
        for k, v in os.environ.items()
        # Inherited repository overrides (e.g. inside a git hook) would point elsewhere.
        if k not in {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"}
    }
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not take the index lock
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return result.stdout if result.returncode == 0 else None


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED
    except Exception:  # a broken dist-info must not fail a run
        return "unknown"


def code_version(start: Path | None = None) -> str:
    """The commit the code ran from, `-dirty` if tracked files changed since.

    Without git or outside a repository (an installed wheel), the package version is
    the best we know. Untracked files are ignored: scratch notebooks and outputs do
    not change the code that ran.
    """
    try:
        cwd = Path(start) if start is not None else Path(__file__).resolve().parent
        if cwd.is_file():
            cwd = cwd.parent
        head = _git(["rev-parse", "--verify", "HEAD"], cwd)
        commit = head.strip() if head else ""
        if len(commit) < 40:
            return _fallback_version()
        status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
        # A status we cannot read is not evidence of a clean tree.
        return f"{commit}-dirty" if status is None or status.strip() else commit
    except Exception:
        return _fallback_version()


def _fallback_version() -> str:
    version = _package_version("modelcycle")
    return f"modelcycle-{'unknown' if version == NOT_INSTALLED else version}"


def package_versions() -> dict[str, str]:
    """Versions from installed metadata, so recording them imports nothing heavy."""
    versions = {"python": platform.python_version()}
    versions.update({name: _package_version(name) for name in TRACKED_PACKAGES})
    return versions


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of canonical JSON: equal configs hash equal whatever their key order."""
    text = json.dumps(
        config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# How a version relates to its parent, by training mode (a scratch run has no parent).
RELATIONS = {"fine_tune": "fine-tuned", "distil": "distilled"}


def run_lineage(
    resolved_config: Mapping[str, Any],
    fingerprints: Mapping[str, str],
    source: str,
    mode: str,
    parent_version: int | None,
    run_id: str,
) -> dict[str, Any]:
    """Everything a version was made from, as the manifest and the registry record it."""
    return {
        "config": dict(resolved_config),
        "config_hash": config_hash(resolved_config),
        "code_version": code_version(),
        "package_versions": package_versions(),
        "data_fingerprints": dict(fingerprints),
        "data_source": source,
        "training_mode": mode,
        "relation": RELATIONS.get(mode),
        "parent_version": parent_version,
        "flow_run_id": run_id,
    }


def fingerprint_frame(df: pd.DataFrame) -> str:
    """SHA-256 of a frame's content: names, dtypes, values and row order, not its index.

    The index is left out so that `reset_index` or a parquet round trip does not
    change what counts as the same data. Columns are hashed one at a time, so a large
    frame is never copied whole.
    """
    from pandas.util import hash_pandas_object

    digest = hashlib.sha256()
    digest.update(json.dumps({"rows": len(df), "columns": df.shape[1]}).encode())
    for position in range(df.shape[1]):
        column = df.iloc[:, position]
        digest.update(_column_header(df.columns[position], column).encode("utf-8"))
        hashes = hash_pandas_object(column, index=False, categorize=True)
        digest.update(hashes.to_numpy(dtype="uint64").tobytes())
    return digest.hexdigest()


def _column_header(name: Any, column: pd.Series) -> str:
    """Name with its type, dtype, and what the hash of values alone would miss."""
    import pandas as pd
    from pandas.util import hash_pandas_object

    header: dict[str, Any] = {
        "name": str(name),
        "name_type": type(name).__name__,
        "dtype": str(column.dtype),
    }
    if isinstance(column.dtype, pd.CategoricalDtype):
        # Category order and unused categories change what an encoder produces.
        categories = column.dtype.categories
        hashed = hash_pandas_object(categories, index=False).to_numpy(dtype="uint64")
        header["categories"] = hashlib.sha256(hashed.tobytes()).hexdigest()
        header["categories_dtype"] = str(categories.dtype)
        header["ordered"] = bool(column.dtype.ordered)
    elif pd.api.types.is_object_dtype(column.dtype):
        # Object values are hashed by their text, so 1 and "1" would otherwise collide.
        header["inferred"] = pd.api.types.infer_dtype(column, skipna=False)
    return json.dumps(header, sort_keys=True, ensure_ascii=False)
