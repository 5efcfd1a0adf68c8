"""Lineage values identify code, packages, config and data, and never stop a run."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelcycle.artifacts import _lineage as lineage
from modelcycle.artifacts import code_version, config_hash, fingerprint_frame, package_versions

# -- code_version -------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [
            "git",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder git cannot climb out of, so an enclosing repository never leaks in."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _fallback() -> str:
    try:
        return f"modelcycle-{metadata.version('modelcycle')}"
    except metadata.PackageNotFoundError:
        return "modelcycle-unknown"


def test_code_version_in_git_repo_is_commit_then_dirty(isolated: Path) -> None:
    _git(isolated, "init", "-q")
    (isolated / "train.py").write_text("print(1)\n")
    _git(isolated, "add", "train.py")
    _git(isolated, "commit", "-q", "-m", "first")
    head = _git(isolated, "rev-parse", "HEAD")
    assert len(head) == 40

    assert code_version(isolated) == head
    (isolated / "scratch.ipynb").write_text("{}")  # untracked: still clean
    assert code_version(isolated) == head
    assert code_version(isolated / "train.py") == head  # a file inside the repo works too

    (isolated / "train.py").write_text("print(2)\n")
    assert code_version(isolated) == f"{head}-dirty"
    _git(isolated, "add", "train.py")  # staged but not committed: still dirty
    assert code_version(isolated) == f"{head}-dirty"

    _git(isolated, "commit", "-q", "-m", "second")
    new_head = _git(isolated, "rev-parse", "HEAD")
    assert new_head != head
    assert code_version(isolated) == new_head


def test_code_version_outside_repo_falls_back(isolated: Path) -> None:
    assert code_version(isolated) == _fallback()


def test_code_version_repo_without_commits_falls_back(isolated: Path) -> None:
    _git(isolated, "init", "-q")
    assert code_version(isolated) == _fallback()


def test_code_version_without_git_binary_falls_back(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _git(isolated, "init", "-q")
    monkeypatch.setenv("PATH", str(isolated / "no-bin-here"))
    assert code_version(isolated) == _fallback()


def test_code_version_never_raises_on_odd_input(tmp_path: Path) -> None:
    assert code_version(tmp_path / "does" / "not" / "exist") == _fallback()
    assert isinstance(code_version(), str) and code_version()


def test_code_version_ignores_inherited_git_dir(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _git(isolated, "init", "-q")
    (isolated / "a.txt").write_text("a")
    _git(isolated, "add", "a.txt")
    _git(isolated, "commit", "-q", "-m", "a")
    head = _git(isolated, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere" / ".git"))
    assert code_version(isolated) == head


# -- package_versions ---------------------------------------------------------


def test_package_versions_reads_metadata() -> None:
    versions = package_versions()
    assert versions["python"] == platform.python_version()
    assert versions["pandas"] == pd.__version__
    assert versions["numpy"] == np.__version__
    expected = {"python", "modelcycle", "prefect", "scikit-learn", "scipy", "skops", "pyarrow"}
    expected |= {"sqlalchemy", "pydantic", "fsspec", "matplotlib", "pandas", "numpy"}
    assert set(versions) == expected
    assert all(isinstance(v, str) and v for v in versions.values())


def test_package_versions_marks_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage, "TRACKED_PACKAGES", ("pandas", "surely-not-installed-pkg-xyz"))
    versions = package_versions()
    assert versions["surely-not-installed-pkg-xyz"] == "not installed"
    assert versions["pandas"] == pd.__version__


# -- config_hash --------------------------------------------------------------


def test_config_hash_is_canonical_json_sha256() -> None:
    config = {"b": [1, 2], "a": {"z": "é", "y": None}}
    canonical = '{"a":{"y":null,"z":"é"},"b":[1,2]}'
    assert config_hash(config) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_config_hash_stable_under_key_order_and_sensitive_to_values() -> None:
    one = {"model": "churn", "train": {"seed": 1, "lr": 0.1}, "paths": [Path("/data/x.csv")]}
    two = {"paths": [Path("/data/x.csv")], "train": {"lr": 0.1, "seed": 1}, "model": "churn"}
    assert config_hash(one) == config_hash(two)
    assert config_hash(one) != config_hash({**one, "train": {"seed": 2, "lr": 0.1}})
    assert config_hash({"a": [1, 2]}) != config_hash({"a": [2, 1]})
    assert config_hash({"a": 1}) != config_hash({"a": "1"})


# -- fingerprint_frame --------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": np.array([31, 45, 22, 60], dtype="int64"),
            "income": [52.5, np.nan, 18.25, 99.0],
            "city": ["Paris", "Lyon", None, "Nice"],
            "member": [True, False, True, True],
            "plan": pd.Categorical(["a", "b", "a", "c"], categories=["a", "b", "c"]),
            "joined": pd.to_datetime(["2020-01-01", "2021-06-30", "2019-12-31", "2024-02-29"]),
        }
    )


def test_fingerprint_equal_for_copy_and_rebuilt_frame() -> None:
    df = _frame()
    assert fingerprint_frame(df) == fingerprint_frame(df.copy())
    assert fingerprint_frame(df) == fingerprint_frame(df.copy(deep=True))
    rebuilt = pd.DataFrame({name: list(df[name]) for name in df.columns}).astype(df.dtypes)
    assert fingerprint_frame(df) == fingerprint_frame(rebuilt)
    assert len(fingerprint_frame(df)) == 64


def test_fingerprint_ignores_memory_layout_and_index() -> None:
    values = np.arange(30, dtype="float64").reshape(10, 3)
    one_block = pd.DataFrame(values, columns=["a", "b", "c"])
    fortran = pd.DataFrame(np.asfortranarray(values), columns=["a", "b", "c"])
    per_column = pd.concat([one_block[[c]].copy() for c in "abc"], axis=1)
    relabelled = one_block.set_axis(list("klmnopqrst"), axis=0)
    expected = fingerprint_frame(one_block)
    assert fingerprint_frame(fortran) == expected
    assert fingerprint_frame(per_column) == expected
    assert fingerprint_frame(relabelled) == expected


def test_fingerprint_survives_parquet_round_trip() -> None:
    df = _frame()
    buffer = io.BytesIO()
    df.to_parquet(buffer)
    back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
    pd.testing.assert_frame_equal(back, df)
    assert fingerprint_frame(back) == fingerprint_frame(df)


def test_fingerprint_changes_with_content() -> None:
    df = _frame()
    base = fingerprint_frame(df)
    changed_cell = df.copy()
    changed_cell.loc[2, "income"] = 18.26
    changed_text = df.copy()
    changed_text.loc[0, "city"] = "paris"
    missing_to_empty = df.copy()
    missing_to_empty.loc[2, "city"] = ""
    variants = {
        "changed numeric cell": changed_cell,
        "changed text cell": changed_text,
        "missing became empty string": missing_to_empty,
        "renamed column": df.rename(columns={"age": "Age"}),
        "reordered rows": df.iloc[[1, 0, 2, 3]].reset_index(drop=True),
        "reordered columns": df[list(reversed(df.columns))],
        "int64 -> float64": df.astype({"age": "float64"}),
        "int64 -> int32": df.astype({"age": "int32"}),
        "category order": df.assign(plan=df["plan"].cat.reorder_categories(["c", "b", "a"])),
        "unused category": df.assign(plan=df["plan"].cat.add_categories(["d"])),
        "category -> object": df.assign(plan=df["plan"].astype(object)),
        "dropped row": df.iloc[:3],
        "dropped column": df.drop(columns=["member"]),
    }
    seen = {base: "original"}
    for label, variant in variants.items():
        fp = fingerprint_frame(variant)
        assert fp not in seen, f"{label} collides with {seen.get(fp)}"
        seen[fp] = label


def test_fingerprint_distinguishes_column_name_and_value_types() -> None:
    assert fingerprint_frame(pd.DataFrame({1: [1]})) != fingerprint_frame(pd.DataFrame({"1": [1]}))
    ints = pd.DataFrame({"x": pd.Series([1, 2], dtype=object)})
    texts = pd.DataFrame({"x": pd.Series(["1", "2"], dtype=object)})
    assert fingerprint_frame(ints) != fingerprint_frame(texts)


def test_fingerprint_handles_empty_and_duplicate_columns() -> None:
    empty = pd.DataFrame({"a": pd.Series([], dtype="int64")})
    assert fingerprint_frame(empty) != fingerprint_frame(pd.DataFrame())
    dup = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    swapped = pd.DataFrame([[2, 1], [4, 3]], columns=["a", "a"])
    assert fingerprint_frame(dup) != fingerprint_frame(swapped)


def test_fingerprint_does_not_mutate_input() -> None:
    df = _frame()
    before = df.copy()
    fingerprint_frame(df)
    pd.testing.assert_frame_equal(df, before)


def test_config_and_fingerprint_are_plain_json_values() -> None:
    # Both go into manifest.json and the registry as strings.
    json.dumps({"config": config_hash({"a": 1}), "data": fingerprint_frame(_frame())})
