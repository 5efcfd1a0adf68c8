"""A small-batch path: the fitted preprocessing applied in numpy, straight from parsed rows.

Measured on the demo champion (one row, one native thread, benchmarks/README.md): the
`ColumnTransformer` over a one-row DataFrame cost three quarters of a prediction and the
histogram-gradient-boosting predict most of the rest (200 trees, each one Cython call with an
OpenMP region). Neither is work: it is per-call overhead. This module rebuilds what the fitted
objects hold (imputer statistics, scaler means and scales, one-hot categories, tree nodes) as
numpy arrays, and applies them to the validated columns of a micro-batch without building a
DataFrame.

It is an optimisation, never a second model: `build_fast_predictor` returns a predictor only
when it recognises every step and a parity check on rows kept for that purpose (the run's
reference sample plus edge rows: missing values, unseen categories, extreme numbers) gives the
pipeline's own labels and probabilities within `PARITY_TOLERANCE`; otherwise it returns
None and the reason, and the pipeline serves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

PARITY_TOLERANCE = 1e-9
# Above this many rows the fitted estimator's own (compiled) predict is faster than walking
# every tree in numpy; below it, its per-call overhead dominates (see `_Trees`).
TREE_ROWS_MAX = 64
_UNSEEN_PROBE = "__modelcycle_parity_unseen__"


class Unsupported(Exception):
    """A step the fast path does not reproduce; the message is the reason logged."""


class Columns(Protocol):
    """What the fast path reads: the parsed feature columns of one or more requests."""

    features: dict[str, list[Any]]
    size: int


@dataclass(frozen=True)
class FastPredictor:
    """The fitted preprocessing as numpy blocks, then the estimator (or its trees in numpy)."""

    blocks: tuple[_Block, ...]
    width: int
    estimator: Any
    trees: _Trees | None
    is_classifier: bool

    def transform(self, batches: Sequence[Columns]) -> np.ndarray:
        """The preprocessed matrix of the batches' rows, in order."""
        n = sum(b.size for b in batches)
        out = np.empty((n, self.width), dtype=np.float64)
        for block in self.blocks:
            block.fill(batches, out)
        return out

    def predict_values(self, batches: Sequence[Columns]) -> np.ndarray:
        """Class probabilities (classifiers with predict_proba) or predictions."""
        X = self.transform(batches)
        if self.trees is not None and X.shape[0] <= TREE_ROWS_MAX:
            return self.trees.predict(X)
        if self.is_classifier:
            return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        return np.asarray(self.estimator.predict(X), dtype=np.float64)


# -- preprocessing blocks --------------------------------------------------------------------


class _Block(Protocol):
    def fill(self, batches: Sequence[Columns], out: np.ndarray) -> None: ...


@dataclass(frozen=True)
class _Numeric:
    """Numeric columns: impute NaN with the fitted statistics, then scale, as sklearn does
    (the same float64 operations in the same order, so the values are identical)."""

    columns: tuple[str, ...]
    start: int
    fill_values: np.ndarray | None
    mean: np.ndarray | None
    scale: np.ndarray | None

    def fill(self, batches: Sequence[Columns], out: np.ndarray) -> None:
        k = len(self.columns)
        X = np.empty((out.shape[0], k), dtype=np.float64)
        for j, name in enumerate(self.columns):
            X[:, j] = _concat(batches, name)
        if self.fill_values is not None:
            missing = np.isnan(X)
            if missing.any():
                X = np.where(missing, self.fill_values, X)
        if self.mean is not None:
            X -= self.mean
        if self.scale is not None:
            X /= self.scale
        out[:, self.start : self.start + k] = X


_MISSING = object()  # the key of a missing value (NaN never equals itself)


@dataclass(frozen=True)
class _OneHot:
    """Categorical columns: impute, then one column per known category (unknown: all zeros,
    or the infrequent column when the encoder maps unknown values there)."""

    columns: tuple[str, ...]
    start: int
    width: int
    fills: tuple[Any, ...]  # per column: the imputed value, or _MISSING when not imputed
    lookups: tuple[dict[Any, int], ...]  # per column: value -> output column within the block
    unknown: tuple[int | None, ...]  # per column: output column for unseen values, or None

    def fill(self, batches: Sequence[Columns], out: np.ndarray) -> None:
        block = np.zeros((out.shape[0], self.width), dtype=np.float64)
        for j, name in enumerate(self.columns):
            lookup, fill, unknown = self.lookups[j], self.fills[j], self.unknown[j]
            row = 0
            for batch in batches:
                for value in batch.features[name]:
                    if isinstance(value, float) and math.isnan(value):
                        value = fill
                    col = lookup.get(value, unknown)
                    if col is not None:
                        block[row, col] = 1.0
                    row += 1
        out[:, self.start : self.start + self.width] = block


@dataclass(frozen=True)
class _Passthrough:
    columns: tuple[str, ...]
    start: int

    def fill(self, batches: Sequence[Columns], out: np.ndarray) -> None:
        for j, name in enumerate(self.columns):
            out[:, self.start + j] = _concat(batches, name)


def _concat(batches: Sequence[Columns], name: str) -> np.ndarray:
    if len(batches) == 1:
        return np.asarray(batches[0].features[name], dtype=np.float64)
    values: list[Any] = []
    for batch in batches:
        values.extend(batch.features[name])
    return np.asarray(values, dtype=np.float64)


# -- trees -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trees:
    """Every tree of a fitted HistGradientBoosting model as flat arrays, walked together.

    One numpy step moves every (row, tree) pair one level down, so a small batch costs about
    `depth` vectorised steps instead of one compiled call per tree. Leaf values are added in
    the estimator's own order (baseline, then tree after tree: a cumulative sum, not numpy's
    pairwise one), so the raw scores are the same numbers.
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray  # (iterations, outputs): the root node of each tree
    depth: int
    baseline: np.ndarray  # (outputs,)
    estimator: Any
    is_classifier: bool

    def raw(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        iterations, outputs = self.roots.shape
        node = np.broadcast_to(self.roots.reshape(1, -1), (n, iterations * outputs)).copy()
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        leaves = self.value[node].reshape(n, iterations, outputs)
        raw = np.empty((n, outputs), dtype=np.float64)
        for k in range(outputs):
            start = np.full((n, 1), self.baseline[k], dtype=np.float64)
            raw[:, k] = np.cumsum(np.hstack([start, leaves[:, :, k]]), axis=1)[:, -1]
        return raw

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = self.raw(X)
        loss = self.estimator._loss
        if self.is_classifier:
            return np.asarray(loss.predict_proba(raw if raw.shape[1] > 1 else raw[:, 0]))
        return np.asarray(loss.link.inverse(raw[:, 0]))


def _trees(estimator: Any, width: int, is_classifier: bool) -> _Trees | None:
    """The numpy trees of a HistGradientBoosting model, or None for any other estimator or
    one with categorical splits (its bitsets are not reproduced)."""
    if not isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        return None
    predictors = getattr(estimator, "_predictors", None)
    if not predictors or getattr(estimator, "is_categorical_", None) is not None:
        return None
    fields = ("feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "value")
    feature, threshold, missing_left, left, right, value, roots = [], [], [], [], [], [], []
    depth, offset = 0, 0
    for iteration in predictors:
        row = []
        for predictor in iteration:
            nodes = predictor.nodes
            if any(f not in nodes.dtype.names for f in (*fields, "is_leaf", "depth")):
                return None
            if "is_categorical" in nodes.dtype.names and nodes["is_categorical"].any():
                return None
            leaf = nodes["is_leaf"].astype(bool)
            own = np.arange(len(nodes)) + offset
            # A leaf points at itself, so extra steps past a shallow leaf change nothing.
            left.append(np.where(leaf, own, nodes["left"].astype(np.int64) + offset))
            right.append(np.where(leaf, own, nodes["right"].astype(np.int64) + offset))
            feature.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
            threshold.append(nodes["num_threshold"].astype(np.float64))
            missing_left.append(nodes["missing_go_to_left"].astype(bool))
            value.append(nodes["value"].astype(np.float64))
            depth = max(depth, int(nodes["depth"].max()))
            row.append(offset)
            offset += len(nodes)
        roots.append(row)
    if int(np.concatenate(feature).max(initial=0)) >= width:
        return None
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    return _Trees(
        feature=np.concatenate(feature),
        threshold=np.concatenate(threshold),
        missing_left=np.concatenate(missing_left),
        left=np.concatenate(left),
        right=np.concatenate(right),
        value=np.concatenate(value),
        roots=np.asarray(roots, dtype=np.int64),
        depth=depth,
        baseline=baseline,
        estimator=estimator,
        is_classifier=is_classifier,
    )


# -- building from a fitted pipeline ----------------------------------------------------------


def build_fast_predictor(
    pipeline: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    sample: pd.DataFrame | None,
    is_classifier: bool,
) -> tuple[FastPredictor | None, str]:
    """A checked fast predictor and "ok", or None and why the pipeline must serve instead.

    `numeric` and `categorical` are the model's feature columns as the request schema
    normalises them (float64 with NaN; text with NaN); `sample` holds rows kept for the parity
    check (the run's reference sample), to which edge rows are added here.
    """
    try:
        fast = _build(pipeline, numeric, is_classifier)
    except Unsupported as exc:
        return None, str(exc)
    probe = parity_rows(pipeline, numeric, categorical, sample)
    problem = check_parity(fast, pipeline, probe, is_classifier)
    if problem:
        return None, problem
    return fast, "ok"


def _build(pipeline: Any, numeric: Sequence[str], is_classifier: bool) -> FastPredictor:
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise Unsupported("not a two-step pipeline (preprocessing, estimator)")
    pre, estimator = pipeline.steps[0][1], pipeline.steps[1][1]
    if not isinstance(pre, ColumnTransformer):
        raise Unsupported(f"preprocessing is {type(pre).__name__}, not a ColumnTransformer")
    if getattr(pre, "sparse_output_", False):
        raise Unsupported("the ColumnTransformer's output is sparse")
    if hasattr(estimator, "feature_names_in_"):
        raise Unsupported("the estimator was fitted on named columns")
    if is_classifier and not hasattr(estimator, "predict_proba"):
        raise Unsupported(f"{type(estimator).__name__} has no predict_proba")
    blocks: list[_Block] = []
    start = 0
    for name, transformer, columns in pre.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        cols = _column_names(name, columns)
        if not cols:
            continue
        block, width = _block(name, transformer, cols, start, set(numeric))
        blocks.append(block)
        start += width
    expected = getattr(estimator, "n_features_in_", start)
    if start != expected:
        raise Unsupported(f"rebuilt {start} columns, the estimator expects {expected}")
    return FastPredictor(
        tuple(blocks), start, estimator, _trees(estimator, start, is_classifier), is_classifier
    )


def _column_names(name: str, columns: Any) -> tuple[str, ...]:
    if isinstance(columns, str) or callable(columns):
        raise Unsupported(f"transformer {name!r} selects columns by {type(columns).__name__}")
    values = list(columns)
    if any(not isinstance(c, str) for c in values):
        raise Unsupported(f"transformer {name!r} selects columns by position")
    return tuple(values)


def _block(
    name: str, transformer: Any, columns: tuple[str, ...], start: int, numeric: set[str]
) -> tuple[_Block, int]:
    steps = _steps(name, transformer)
    if not steps:
        if not set(columns) <= numeric:
            raise Unsupported(f"transformer {name!r} passes non-numeric columns through")
        return _Passthrough(columns, start), len(columns)
    imputer = steps[0] if isinstance(steps[0], SimpleImputer) else None
    rest = steps[1:] if imputer is not None else steps
    if imputer is not None:
        _check_imputer(name, imputer, len(columns))
    if len(rest) == 1 and isinstance(rest[0], OneHotEncoder):
        return _one_hot(name, imputer, rest[0], columns, start)
    if not set(columns) <= numeric:
        raise Unsupported(f"transformer {name!r} treats non-numeric columns as numbers")
    scaler = None
    if len(rest) == 1 and isinstance(rest[0], StandardScaler):
        scaler = rest[0]
    elif rest:
        kinds = ", ".join(type(s).__name__ for s in rest)
        raise Unsupported(f"transformer {name!r} has steps the fast path does not know: {kinds}")
    fill = None
    if imputer is not None:
        fill = np.asarray(imputer.statistics_, dtype=np.float64)
    mean = getattr(scaler, "mean_", None) if scaler is not None and scaler.with_mean else None
    scale = getattr(scaler, "scale_", None) if scaler is not None and scaler.with_std else None
    return (
        _Numeric(
            columns,
            start,
            fill,
            None if mean is None else np.asarray(mean, dtype=np.float64),
            None if scale is None else np.asarray(scale, dtype=np.float64),
        ),
        len(columns),
    )


def _steps(name: str, transformer: Any) -> list[Any]:
    """The fitted steps of one ColumnTransformer entry, passthrough steps left out."""
    if isinstance(transformer, str):
        if transformer == "passthrough":
            return []
        raise Unsupported(f"transformer {name!r} is {transformer!r}")
    raw = [s for _n, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    steps = [s for s in raw if s is not None and s != "passthrough"]
    for step in steps:
        # Exact classes: a subclass may transform differently from what is rebuilt here.
        if type(step) not in (SimpleImputer, StandardScaler, OneHotEncoder):
            raise Unsupported(f"transformer {name!r} has a {type(step).__name__} step")
    return steps


def _check_imputer(name: str, imputer: SimpleImputer, n_columns: int) -> None:
    marker = imputer.missing_values
    if not (isinstance(marker, float) and math.isnan(marker)):
        raise Unsupported(f"transformer {name!r}: an imputer whose missing marker is not NaN")
    if getattr(imputer, "indicator_", None) is not None:
        raise Unsupported(f"transformer {name!r}: an imputer that adds indicator columns")
    stats = np.asarray(imputer.statistics_)
    if len(stats) != n_columns:
        raise Unsupported(f"transformer {name!r}: the imputer drops empty columns")
    if stats.dtype.kind == "f" and np.isnan(stats).any():
        raise Unsupported(f"transformer {name!r}: the imputer has no value for a column")


def _one_hot(
    name: str,
    imputer: SimpleImputer | None,
    encoder: OneHotEncoder,
    columns: tuple[str, ...],
    start: int,
) -> tuple[_Block, int]:
    if getattr(encoder, "drop_idx_", None) is not None:
        raise Unsupported(f"transformer {name!r}: a one-hot encoder that drops a category")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise Unsupported(f"transformer {name!r}: handle_unknown={encoder.handle_unknown!r}")
    if np.dtype(encoder.dtype) != np.float64:
        raise Unsupported(f"transformer {name!r}: a one-hot encoder with dtype {encoder.dtype}")
    infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(columns)
    fills: list[Any] = []
    lookups: list[dict[Any, int]] = []
    unknown: list[int | None] = []
    offset = 0
    for j, categories in enumerate(encoder.categories_):
        rare = {_key(c) for c in (infrequent[j] if infrequent[j] is not None else [])}
        lookup: dict[Any, int] = {}
        for category in categories:
            key = _key(category)
            if key not in rare:
                lookup[key] = offset
                offset += 1
        rare_column = None
        if rare:
            rare_column = offset
            for key in rare:
                lookup[key] = rare_column
            offset += 1
        if imputer is None:
            fills.append(_MISSING)
        else:
            fills.append(_key(imputer.statistics_[j]))
        lookups.append(lookup)
        unknown.append(rare_column if encoder.handle_unknown == "infrequent_if_exist" else None)
    return _OneHot(columns, start, offset, tuple(fills), tuple(lookups), tuple(unknown)), offset


def _key(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return _MISSING
    return value.item() if isinstance(value, np.generic) else value


# -- parity ----------------------------------------------------------------------------------


@dataclass
class _Rows:
    """Rows in the form the request schema hands to a model (one batch)."""

    features: dict[str, list[Any]]
    size: int


def parity_rows(
    pipeline: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    sample: pd.DataFrame | None,
) -> pd.DataFrame:
    """The sample's feature rows plus edge rows built from what the pipeline learned: every
    known category, a category never seen, missing values in each column and all at once,
    and numbers far outside the training range."""
    names = [*numeric, *categorical]
    parts: list[pd.DataFrame] = []
    if sample is not None and len(sample) and set(names) <= set(sample.columns):
        parts.append(_normalise(sample[names], numeric, categorical))
    known = _known_categories(pipeline)
    base = {n: 0.0 for n in numeric} | {
        n: (sorted(known[n])[0] if known.get(n) else _UNSEEN_PROBE) for n in categorical
    }
    edge: list[dict[str, Any]] = [dict(base), {n: math.nan for n in names}]
    for n in numeric:
        for value in (math.nan, -1e9, -1.0, 1.0, 1e9):
            edge.append({**base, n: value})
    for n in categorical:
        for value in (math.nan, _UNSEEN_PROBE, *sorted(known.get(n, ()))):
            edge.append({**base, n: value})
    parts.append(_normalise(pd.DataFrame(edge, columns=names), numeric, categorical))
    return pd.concat(parts, ignore_index=True)


def _normalise(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """Numbers as float64, categories as text (as the request schema sends them), NaN missing."""
    out = {}
    for n in numeric:
        out[n] = pd.to_numeric(frame[n], errors="coerce").astype(np.float64).to_numpy()
    for n in categorical:
        values = np.empty(len(frame), dtype=object)
        values[:] = [
            math.nan if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            for v in frame[n].tolist()
        ]
        out[n] = values
    return pd.DataFrame(out, columns=[*numeric, *categorical])


def _known_categories(pipeline: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    pre = pipeline.steps[0][1] if isinstance(pipeline, Pipeline) else None
    if not isinstance(pre, ColumnTransformer):
        return found
    for _name, transformer, columns in pre.transformers_:
        steps = transformer.steps if isinstance(transformer, Pipeline) else [(None, transformer)]
        for _n, step in steps:
            if isinstance(step, OneHotEncoder) and hasattr(step, "categories_"):
                for column, cats in zip(columns, step.categories_, strict=False):
                    found[str(column)] = {str(c) for c in cats if _key(c) is not _MISSING}
    return found


def check_parity(
    fast: FastPredictor,
    pipeline: Any,
    rows: pd.DataFrame,
    is_classifier: bool,
) -> str | None:
    """None when the fast path gives the pipeline's answers on `rows` (typed as
    `parity_rows` types them) in one batch and in batches of 7, else what differed."""
    if is_classifier:
        expected = np.asarray(pipeline.predict_proba(rows), dtype=np.float64)
    else:
        expected = np.asarray(pipeline.predict(rows), dtype=np.float64)
    columns = {n: rows[n].tolist() for n in rows.columns}
    whole = [_Rows(columns, len(rows))]
    small = [
        _Rows({n: v[i : i + 7] for n, v in columns.items()}, len(rows[i : i + 7]))
        for i in range(0, len(rows), 7)
    ]
    for label, batches in (("one batch", whole), ("batches of 7", small)):
        try:
            got = np.asarray(
                np.concatenate([fast.predict_values([b]) for b in batches]), dtype=np.float64
            )
        except Exception as exc:  # any failure means the pipeline serves
            return f"parity check ({label}) failed: {type(exc).__name__}: {exc}"
        if got.shape != expected.shape:
            return f"parity check ({label}): shape {got.shape}, pipeline {expected.shape}"
        gap = float(np.max(np.abs(got - expected), initial=0.0))
        if not gap <= PARITY_TOLERANCE:
            return (
                f"parity check ({label}) on {len(rows)} rows: largest difference {gap:.3g} "
                f"above {PARITY_TOLERANCE:g}"
            )
        if is_classifier and not np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)):
            return f"parity check ({label}): a label differs from the pipeline's"
    return None
