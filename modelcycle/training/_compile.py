"""A compiled form of a fitted pipeline: the same function, run faster, kept only when proven
to give the same answers.

The runtime is treelite 4 (its GTIL interpreter) for the tree ensembles, with the fitted
preprocessing replayed in numpy. Chosen by measurement on the demo pipeline (scikit-learn 1.9):
skl2onnx 1.20 refuses the whole pipeline (its imputer converter needs a string missing marker,
the pipeline's is NaN) and, given the estimator alone on the preprocessed features, fails on
`HistGradientBoostingClassifier` ("AttributeProto.ints: Expected an int, got a boolean");
treelite imports it and agrees with scikit-learn to 6e-16 on every holdout probability, and
answers one row in about 0.2 ms against 1.5-17 ms for scikit-learn's predictor on a loaded
2-core machine (one OpenMP region per tree; `benchmarks/compact_models.py` has the figures).

The compiled file (`model.compiled`) is a zip of `spec.json` (the preprocessing's fitted
numbers, the classes, the runtime's version) and `trees.bin` (treelite's own serialisation,
not a pickle). It is parsed only after its SHA-256 matched the run's verified manifest
(`modelcycle.artifacts.load_compiled`).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

COMPILED_FILE = "model.compiled"
RUNTIME = "treelite"
_SPEC, _TREES = "spec.json", "trees.bin"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_SMALL_BATCH = 64


class NotCompilable(Exception):
    """This pipeline has no compiled form (the reason is recorded, training goes on)."""


def runtime_version() -> str | None:
    """treelite's version, or None when the `compile` extra is not installed."""
    try:
        import treelite
    except ImportError:
        return None
    return str(treelite.__version__)


# -- the preprocessing, replayed in numpy --------------------------------------------------


def _numeric_spec(columns: list[str], steps: Pipeline) -> dict[str, Any]:
    impute, scale = steps.named_steps.get("impute"), steps.named_steps.get("scale")
    if not isinstance(impute, SimpleImputer) or not isinstance(scale, StandardScaler):
        raise NotCompilable("numeric preprocessing is not SimpleImputer + StandardScaler")
    if not (isinstance(impute.missing_values, float) and math.isnan(impute.missing_values)):
        raise NotCompilable("numeric imputer's missing marker is not NaN")
    if impute.add_indicator:
        raise NotCompilable("numeric imputer adds indicator columns")
    n = len(columns)
    mean = scale.mean_ if scale.with_mean else np.zeros(n)
    spread = scale.scale_ if scale.with_std else np.ones(n)
    return {
        "columns": columns,
        "fill": np.asarray(impute.statistics_, dtype="float64").tolist(),
        "mean": np.asarray(mean, dtype="float64").tolist(),
        "scale": np.asarray(spread, dtype="float64").tolist(),
    }


def _categorical_spec(columns: list[str], steps: Pipeline) -> dict[str, Any]:
    impute, encode = steps.named_steps.get("impute"), steps.named_steps.get("encode")
    if not isinstance(impute, SimpleImputer) or not isinstance(encode, OneHotEncoder):
        raise NotCompilable("categorical preprocessing is not SimpleImputer + OneHotEncoder")
    if not (isinstance(impute.missing_values, float) and math.isnan(impute.missing_values)):
        raise NotCompilable("categorical imputer's missing marker is not NaN")
    infrequent = getattr(encode, "infrequent_categories_", None) or []
    if encode.drop is not None or any(c is not None for c in infrequent):
        raise NotCompilable("the encoder drops or groups categories (not replayed)")
    if encode.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise NotCompilable(f"the encoder's handle_unknown is {encode.handle_unknown!r}")
    categories = [[_plain(v) for v in cats.tolist()] for cats in encode.categories_]
    for cats in categories:
        if any(not isinstance(v, str) for v in cats):
            raise NotCompilable("a categorical column has non-text categories")
    return {
        "columns": columns,
        "fill": [_plain(v) for v in np.asarray(impute.statistics_, dtype=object).tolist()],
        "categories": categories,
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def preprocessing_spec(preprocess: Any) -> dict[str, Any]:
    """The fitted numbers of the project's ColumnTransformer (`training.build_pipeline`)."""
    if isinstance(preprocess, Pipeline) and len(preprocess.steps) == 1:
        preprocess = preprocess.steps[0][1]
    if not isinstance(preprocess, ColumnTransformer):
        raise NotCompilable("the preprocessing is not one ColumnTransformer")
    spec: dict[str, Any] = {"numeric": None, "categorical": None}
    for name, steps, columns in preprocess.transformers_:
        if name == "remainder":
            if steps != "drop":
                raise NotCompilable("the ColumnTransformer passes other columns through")
            continue
        if name not in spec or not isinstance(steps, Pipeline):
            raise NotCompilable(f"unexpected transformer {name!r}")
        columns = [str(c) for c in columns]
        build = _numeric_spec if name == "numeric" else _categorical_spec
        spec[name] = build(columns, steps) if columns else None
    if [t[0] for t in preprocess.transformers_ if t[0] != "remainder"] != [
        "numeric",
        "categorical",
    ]:
        raise NotCompilable("transformers are not numeric then categorical")
    return spec


@dataclass(frozen=True)
class _Preprocess:
    """`preprocessing_spec` as arrays: a frame in, the estimator's float64 matrix out."""

    spec: dict[str, Any]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        parts = []
        numeric = self.spec["numeric"]
        if numeric:
            values = frame[numeric["columns"]].to_numpy(dtype="float64", na_value=np.nan)
            fill = np.asarray(numeric["fill"], dtype="float64")
            values = np.where(np.isnan(values), fill, values)
            values -= np.asarray(numeric["mean"], dtype="float64")
            values /= np.asarray(numeric["scale"], dtype="float64")
            parts.append(values)
        categorical = self.spec["categorical"]
        if categorical:
            for column, fill, cats in zip(
                categorical["columns"],
                categorical["fill"],
                categorical["categories"],
                strict=True,
            ):
                parts.append(_one_hot(frame[column].to_numpy(dtype=object), fill, cats))
        return np.hstack(parts) if parts else np.empty((len(frame), 0))


def _one_hot(values: np.ndarray, fill: Any, categories: list[str]) -> np.ndarray:
    """As SimpleImputer(missing_values=NaN) then OneHotEncoder(handle_unknown='ignore'): a
    value is missing when it is not equal to itself, the imputer's own test (so NaN is, None
    is an unknown category, and pd.NA raises as it does there); unknown values are zeros."""
    missing = values != values
    filled = np.where(missing, np.asarray(fill, dtype=object), values)
    if len(filled) <= _SMALL_BATCH:  # a dict is faster than building a Categorical
        index = {c: i for i, c in enumerate(categories)}
        codes = np.fromiter((index.get(v, -1) for v in filled), dtype="int64", count=len(filled))
    else:
        codes = np.asarray(pd.Categorical(filled, categories=categories).codes, dtype="int64")
    out = np.zeros((len(values), len(categories)))
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


# -- the compiled model --------------------------------------------------------------------


class CompiledModel:
    """Answers like the fitted pipeline it was compiled from: `predict`, `predict_proba` (for
    classifiers) and `classes_`, on the same raw frames."""

    def __init__(self, spec: dict[str, Any], trees: Any) -> None:
        self.spec = spec
        self._preprocess = _Preprocess(spec["preprocessing"])
        self._trees = trees
        if spec["classes"] is not None:  # regressors have no classes_, as in scikit-learn
            kind = object if spec["class_kind"] == "str" else None
            self.classes_ = np.asarray(spec["classes"], dtype=kind)

    @property
    def is_classifier(self) -> bool:
        return self.spec["classes"] is not None

    def _raw(self, frame: pd.DataFrame) -> np.ndarray:
        import treelite.gtil

        features = self._preprocess.transform(frame)
        out = treelite.gtil.predict(self._trees, features, nthread=1)
        return np.asarray(out, dtype="float64").reshape(len(frame), -1)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.is_classifier:
            raise AttributeError("a regressor has no predict_proba")
        raw = self._raw(frame)
        if raw.shape[1] == 1:  # binary: the positive class's probability
            return np.column_stack([1.0 - raw[:, 0], raw[:, 0]])
        return raw

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.is_classifier:
            return self._raw(frame)[:, 0]
        return self.classes_[np.argmax(self.predict_proba(frame), axis=1)]

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in (
                (_SPEC, json.dumps(self.spec, sort_keys=True).encode()),
                (_TREES, bytes(self._trees.serialize_bytes())),
            ):
                info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return buffer.getvalue()

    @classmethod
    def from_verified_bytes(cls, data: bytes) -> CompiledModel:
        """Only for bytes whose SHA-256 was checked (`artifacts.load_compiled` does)."""
        import treelite

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            spec = json.loads(archive.read(_SPEC))
            trees = treelite.Model.deserialize_bytes(archive.read(_TREES))
        return cls(spec, trees)


def compile_pipeline(pipeline: Pipeline) -> CompiledModel:
    """The compiled form, or NotCompilable saying why (runtime missing, estimator or
    preprocessing it cannot replay)."""
    if runtime_version() is None:
        raise NotCompilable("treelite is not installed (pip install 'modelcycle[compile]')")
    import treelite.sklearn

    estimator = pipeline.steps[-1][1]
    spec = preprocessing_spec(pipeline[:-1])
    try:
        trees = treelite.sklearn.import_model(estimator)
    except Exception as exc:  # treelite names what it cannot import: that is the reason
        raise NotCompilable(
            f"treelite cannot import {type(estimator).__name__}: {exc}".splitlines()[0]
        ) from None
    classes = None
    kind = None
    if is_classifier(estimator):
        values = np.asarray(estimator.classes_)
        kind = "str" if values.dtype.kind in "OUS" else values.dtype.kind
        if kind not in ("str", "i", "u", "b"):
            raise NotCompilable(f"class labels of dtype {values.dtype} are not replayed")
        classes = [_plain(v) for v in values.tolist()]
    return CompiledModel(
        {
            "runtime": RUNTIME,
            "runtime_version": runtime_version(),
            "estimator": type(estimator).__name__,
            "preprocessing": spec,
            "classes": classes,
            "class_kind": kind,
        },
        trees,
    )


# -- parity --------------------------------------------------------------------------------


def parity_evidence(
    pipeline: Pipeline,
    compiled: Any,
    rows: dict[str, pd.DataFrame],
    max_proba_difference: float,
) -> dict[str, Any]:
    """The compiled form against the pipeline on each named set of rows (the holdout, the
    gate's edge cases): identical labels, probabilities (or regression predictions) within
    the tolerance; `passed` only when every set passes and every set could be predicted."""
    sets: dict[str, Any] = {}
    for name, frame in rows.items():
        sets[name] = _parity_on(pipeline, compiled, frame, max_proba_difference)
    return {
        "passed": bool(sets) and all(s["passed"] for s in sets.values()),
        "tolerance": max_proba_difference,
        "sets": sets,
    }


def _parity_on(pipeline: Pipeline, compiled: Any, frame: pd.DataFrame, tol: float) -> dict:
    try:
        expected_labels = np.asarray(pipeline.predict(frame))
    except Exception as exc:  # the pipeline itself refuses these rows: compare refusals
        expected_labels = None
        expected_error = type(exc).__name__
    try:
        labels = np.asarray(compiled.predict(frame))
    except Exception as exc:
        labels = None
        error = f"{type(exc).__name__}: {exc}"
    if expected_labels is None or labels is None:
        same = expected_labels is None and labels is None
        return {
            "rows": len(frame),
            "passed": same,
            "detail": "both refuse these rows"
            if same
            else f"only one refuses: {error if labels is None else expected_error}",
        }
    classifier = hasattr(pipeline, "predict_proba") and is_classifier(pipeline.steps[-1][1])
    if classifier:
        differing = int(np.sum(expected_labels.astype(str) != labels.astype(str)))
        gap = float(np.max(np.abs(pipeline.predict_proba(frame) - compiled.predict_proba(frame))))
    else:
        differing = 0
        gap = float(np.max(np.abs(expected_labels.astype(float) - labels.astype(float))))
    return {
        "rows": len(frame),
        "differing_labels": differing,
        "max_difference": gap,
        "passed": differing == 0 and gap <= tol,
    }


@dataclass(frozen=True)
class CompileOutcome:
    """What training records about its compiled form: the file's bytes only when parity
    passed, and the evidence either way (why not, or the parity per set of rows)."""

    data: bytes | None
    evidence: dict[str, Any]

    @property
    def kept(self) -> bool:
        return self.data is not None


def compile_with_parity(
    pipeline: Pipeline, rows: dict[str, pd.DataFrame], max_proba_difference: float
) -> CompileOutcome:
    """Compile, read the bytes back as serving will, and keep them only if that reloaded
    form gives the pipeline's answers on every set of rows."""
    base: dict[str, Any] = {"runtime": RUNTIME, "runtime_version": runtime_version()}
    try:
        data = compile_pipeline(pipeline).to_bytes()
    except NotCompilable as exc:
        return CompileOutcome(None, {**base, "kept": False, "reason": str(exc)})
    reloaded = CompiledModel.from_verified_bytes(data)  # bytes made here, in this process
    parity = parity_evidence(pipeline, reloaded, rows, max_proba_difference)
    kept = parity["passed"]
    reason = (
        None
        if kept
        else "parity failed: "
        + ", ".join(name for name, result in parity["sets"].items() if not result["passed"])
    )
    evidence = {**base, "kept": kept, "reason": reason, "bytes": len(data), "parity": parity}
    return CompileOutcome(data if kept else None, evidence)
