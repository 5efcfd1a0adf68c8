"""Model files: reproducible bytes, hash checked before parsing, only allowed types loaded."""

from __future__ import annotations

import io
import multiprocessing
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modelcycle.artifacts import (
    TRUSTED_TYPES,
    UntrustedModelError,
    dump_model,
    load_model,
    sha256_bytes,
    sha256_file,
)
from modelcycle.artifacts import _model_io as model_io
from modelcycle.errors import ArtifactStoreError, IntegrityError

CLASSIFIERS = [
    LogisticRegression(),
    SGDClassifier(random_state=0),
    SGDClassifier(loss="log_loss", random_state=0),
    RandomForestClassifier(n_estimators=5, random_state=0),
    GradientBoostingClassifier(n_estimators=5, random_state=0),
    HistGradientBoostingClassifier(max_iter=5, random_state=0),
    DecisionTreeClassifier(random_state=0),
]
REGRESSORS = [
    SGDRegressor(random_state=0),
    Ridge(),
    LinearRegression(),
    RandomForestRegressor(n_estimators=5, random_state=0),
    GradientBoostingRegressor(n_estimators=5, random_state=0),
    HistGradientBoostingRegressor(max_iter=5, random_state=0),
    DecisionTreeRegressor(random_state=0),
]


def _frame(n: int = 120) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(
        {
            "tenure": rng.normal(size=n),
            "spend": rng.normal(size=n),
            "plan": rng.choice(["basic", "plus", "pro"], size=n),
        }
    )
    X.loc[::9, "tenure"] = np.nan
    X.loc[::13, "plan"] = None
    binary = np.where(X["spend"] > 0, "churn", "stay")
    multiclass = rng.choice(["a", "b", "c"], size=n)
    target = X["spend"].to_numpy() * 3 + rng.normal(size=n)
    return X, binary, multiclass, target


def _pipeline(estimator: BaseEstimator) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    features = ColumnTransformer(
        [("num", numeric, ["tenure", "spend"]), ("cat", categorical, ["plan"])]
    )
    return Pipeline([("features", features), ("model", clone(estimator))])


def _fitted(estimator: BaseEstimator, multiclass: bool = False) -> Pipeline:
    X, binary, multi, target = _frame()
    y = (multi if multiclass else binary) if is_classifier(estimator) else target
    return _pipeline(estimator).fit(X, y)


def _forest_file_hash() -> str:
    """Fit and dump in a fresh interpreter: object ids and hash seeds all differ there."""
    return sha256_bytes(dump_model(_fitted(RandomForestClassifier(n_estimators=5, random_state=0))))


def _double(X: Any) -> Any:
    return X * 2


def test_dump_twice_gives_identical_bytes() -> None:
    pipeline = _fitted(HistGradientBoostingClassifier(max_iter=5, random_state=0))
    assert dump_model(pipeline) == dump_model(pipeline)
    # Plain skops is not reproducible: this is why dump_model exists.
    assert sio.dumps(pipeline) != sio.dumps(pipeline)


def test_same_fit_in_another_process_gives_the_same_hash() -> None:
    ctx = multiprocessing.get_context("spawn")
    old_seed = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = "12345"  # inherited by the spawned interpreter
    try:
        with ctx.Pool(1) as pool:
            remote = pool.apply(_forest_file_hash)
    finally:
        if old_seed is None:
            os.environ.pop("PYTHONHASHSEED")
        else:
            os.environ["PYTHONHASHSEED"] = old_seed
    assert remote == _forest_file_hash()


@pytest.mark.parametrize("estimator", CLASSIFIERS + REGRESSORS, ids=lambda e: repr(e))
def test_round_trip_predicts_the_same(tmp_path: Path, estimator: BaseEstimator) -> None:
    pipeline = _fitted(estimator)
    data = dump_model(pipeline)
    path = tmp_path / "model.skops"
    path.write_bytes(data)

    loaded = load_model(str(path), sha256_bytes(data))

    X = _frame()[0]
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    assert dump_model(loaded) == data


def test_trusted_types_cover_every_supported_estimator() -> None:
    """Re-derive TRUSTED_TYPES: an upgrade that needs a new type fails here, not in serving."""
    needed: set[str] = set()
    for estimator in CLASSIFIERS + REGRESSORS:
        for multiclass in (False, True):
            data = sio.dumps(_fitted(estimator, multiclass=multiclass))
            needed.update(sio.get_untrusted_types(data=data))
    assert needed <= set(TRUSTED_TYPES)
    assert list(TRUSTED_TYPES) == sorted(TRUSTED_TYPES)


def test_tampered_file_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dump_model(_fitted(LogisticRegression()))
    expected = sha256_bytes(data)
    path = tmp_path / "model.skops"
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    calls: list[str] = []
    monkeypatch.setattr(model_io.sio, "loads", lambda *a, **k: calls.append("loads"))
    monkeypatch.setattr(model_io.sio, "get_untrusted_types", lambda **k: calls.append("audit"))

    with pytest.raises(IntegrityError) as info:
        load_model(str(path), expected)

    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert sha256_bytes(bytes(tampered)) in message
    assert "refusing to load" in message
    assert calls == []


def test_custom_function_is_refused_and_named(tmp_path: Path) -> None:
    X, binary, _, _ = _frame()
    pipeline = Pipeline(
        [
            ("features", _pipeline(LogisticRegression()).steps[0][1]),
            ("double", FunctionTransformer(_double)),
            ("model", LogisticRegression()),
        ]
    ).fit(X, binary)
    data = dump_model(pipeline)
    path = tmp_path / "model.skops"
    path.write_bytes(data)

    with pytest.raises(UntrustedModelError, match=r"refusing to load.*_double"):
        load_model(str(path), sha256_bytes(data))

    # The caller can allow it explicitly, and only then does it load.
    allowed = [name for name in sio.get_untrusted_types(data=data) if name.endswith("_double")]
    loaded = load_model(str(path), sha256_bytes(data), extra_trusted=allowed)
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


def test_shared_objects_stay_shared(tmp_path: Path) -> None:
    """Renumbered ids must keep one object referenced twice as one object."""
    scaler = StandardScaler().fit(np.arange(12.0).reshape(6, 2))
    data = dump_model({"a": scaler, "b": scaler})
    path = tmp_path / "pair.skops"
    path.write_bytes(data)

    loaded = load_model(str(path), sha256_bytes(data))

    assert loaded["a"] is loaded["b"]
    np.testing.assert_array_equal(loaded["a"].mean_, scaler.mean_)


def test_padding_bytes_do_not_reach_the_file() -> None:
    """Tree node arrays have padding that holds whatever was in memory; it must not matter."""
    dtype = np.dtype({"names": ["left", "flag"], "formats": ["<i8", "u1"], "itemsize": 16})
    values = np.array([(1, 1), (2, 0)], dtype=dtype)
    raw = bytearray(values.tobytes())
    for row in range(2):
        raw[row * 16 + 9 : row * 16 + 16] = b"\xaa" * 7  # garbage in the padding only
    dirty = np.frombuffer(bytes(raw), dtype=dtype).copy()
    np.testing.assert_array_equal(dirty, values)

    assert dump_model({"nodes": dirty}) == dump_model({"nodes": values})


def test_sparse_attributes_are_reproducible_and_load_when_allowed(tmp_path: Path) -> None:
    pipeline = _fitted(SGDClassifier(random_state=0))
    pipeline[-1].sparsify()  # coef_ becomes a scipy sparse matrix, stored as a nested .npz
    data = dump_model(pipeline)
    assert data == dump_model(pipeline)
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        (npz,) = [n for n in outer.namelist() if n.endswith(".npz")]
        with zipfile.ZipFile(io.BytesIO(outer.read(npz))) as inner:
            assert {i.date_time for i in inner.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    path = tmp_path / "model.skops"
    path.write_bytes(data)

    with pytest.raises(UntrustedModelError, match=r"scipy\.sparse"):
        load_model(str(path), sha256_bytes(data))
    sparse_types = [n for n in sio.get_untrusted_types(data=data) if n.startswith("scipy.sparse")]
    loaded = load_model(str(path), sha256_bytes(data), extra_trusted=sparse_types)
    X = _frame()[0]
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


def test_sha256_file_matches_bytes_for_paths_and_urls(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # spans several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    assert sha256_file(path) == sha256_bytes(payload)
    assert sha256_file(f"file://{path}") == sha256_bytes(payload)


def test_load_from_fsspec_url() -> None:
    import fsspec

    data = dump_model(_fitted(Ridge()))
    url = "memory://modelcycle-test/run-1/model.skops"
    with fsspec.open(url, "wb") as f:
        f.write(data)
    try:
        loaded = load_model(url, sha256_bytes(data))
    finally:
        fsspec.filesystem("memory").rm("modelcycle-test", recursive=True)
    assert isinstance(loaded, Pipeline)


def test_missing_file_and_malformed_hash_are_clear(tmp_path: Path) -> None:
    missing = tmp_path / "nope.skops"
    with pytest.raises(ArtifactStoreError, match=r"nope\.skops"):
        load_model(str(missing), "0" * 64)
    with pytest.raises(IntegrityError, match="64 hex characters"):
        load_model(str(missing), "abc")
