"""Metrics, slices, plots and the gate, checked against scikit-learn on hand-made examples."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict
from sklearn import metrics as skm

from modelcycle.artifacts import ArtifactStore
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.evaluation import (
    Outputs,
    compare,
    compute_metrics,
    metric_value,
    plots,
    slice_metrics,
)
from modelcycle.gate import decide, floor_check, floor_checks
from modelcycle.utils import json_ready
from tasks.evaluation import compare_with_champion

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BINARY_METRICS = [
    "roc_auc",
    "average_precision",
    "f1",
    "precision",
    "recall",
    "brier",
    "accuracy",
    "balanced_accuracy",
    "log_loss",
]


def _config(**changes: Any) -> PipelineConfig:
    raw = demo_config_dict()
    raw.update(changes)
    return parse_config(raw)


def _binary_config(**evaluation: Any) -> PipelineConfig:
    spec = {"primary_metric": "roc_auc", "extra_metrics": BINARY_METRICS[1:], **evaluation}
    return _config(evaluation=spec)


def _multiclass_config() -> PipelineConfig:
    return _config(
        task="multiclass_classification",
        split={"strategy": "stratified"},
        evaluation={
            "primary_metric": "roc_auc_ovr",
            "extra_metrics": ["f1_macro", "f1_weighted", "accuracy", "log_loss"],
        },
        gate={"floors": {}},
    )


def _regression_config() -> PipelineConfig:
    columns = demo_config_dict()["columns"]
    columns.pop("high_income")
    return _config(
        task="regression",
        target="realrinc",
        columns=columns,
        split={"strategy": "random"},
        evaluation={
            "primary_metric": "rmse",
            "extra_metrics": ["mae", "median_absolute_error", "r2"],
        },
        gate={"floors": {"rmse": 5.0, "r2": 0.5}},
    )


# A hand-made binary example: ten rows, scores for class 1, threshold 0.5.
Y = np.array([0, 0, 1, 1, 1, 0, 1, 0, 1, 0])
P1 = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2, 0.7, 0.3, 0.55, 0.45])
PRED = (P1 >= 0.5).astype(int)
CLASSES = np.array([0, 1])


def _binary_outputs() -> Outputs:
    return Outputs(PRED, np.column_stack([1 - P1, P1]), CLASSES)


# --- metrics -------------------------------------------------------------------------------


def test_binary_metrics_equal_sklearn() -> None:
    config = _binary_config()
    got = compute_metrics(Y, _binary_outputs(), config)
    expected = {
        "roc_auc": skm.roc_auc_score(Y, P1),
        "average_precision": skm.average_precision_score(Y, P1),
        "f1": skm.f1_score(Y, PRED),
        "precision": skm.precision_score(Y, PRED),
        "recall": skm.recall_score(Y, PRED),
        "brier": skm.brier_score_loss(Y, P1),
        "accuracy": skm.accuracy_score(Y, PRED),
        "balanced_accuracy": skm.balanced_accuracy_score(Y, PRED),
        "log_loss": skm.log_loss(Y, np.column_stack([1 - P1, P1])),
    }
    assert list(got) == BINARY_METRICS  # primary first, in the configured order
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name


@pytest.mark.parametrize("decimals", [None, 2, 1])
def test_ranking_metrics_equal_sklearn_with_ties_at_scale(decimals: int | None) -> None:
    """ROC AUC and average precision come from score-group counts (one sort, a third of
    scikit-learn's time at a million rows); ties must count as scikit-learn counts them."""
    rng = np.random.default_rng(7)
    scores = rng.random(20_000)
    if decimals is not None:
        scores = np.round(scores, decimals)  # a few distinct scores: ties everywhere
    y = (rng.random(20_000) < scores).astype(int)
    outputs = Outputs(
        (scores > 0.5).astype(int), np.column_stack([1 - scores, scores]), np.array([0, 1])
    )
    got = compute_metrics(y, outputs, _binary_config())
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-12)
    assert got["average_precision"] == pytest.approx(
        skm.average_precision_score(y, scores), abs=1e-12
    )
    one_class = compute_metrics(np.ones(50, int), outputs.subset(np.arange(50)), _binary_config())
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["average_precision"])


def test_binary_metrics_by_hand() -> None:
    # Independent of sklearn: 4 of 5 positives found, 4 of 5 flagged rows are positive.
    config = _binary_config()
    got = compute_metrics(Y, _binary_outputs(), config)
    true_pos = int(((PRED == 1) & (Y == 1)).sum())
    assert got["precision"] == pytest.approx(true_pos / (PRED == 1).sum())
    assert got["recall"] == pytest.approx(true_pos / (Y == 1).sum())
    assert got["accuracy"] == pytest.approx((PRED == Y).mean())
    assert got["brier"] == pytest.approx(float(np.mean((P1 - Y) ** 2)))
    pairs = [(p, n) for p in P1[Y == 1] for n in P1[Y == 0]]
    auc = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert got["roc_auc"] == pytest.approx(auc)


def test_positive_class_is_honoured() -> None:
    config = _binary_config(positive_class=0)
    got = compute_metrics(Y, _binary_outputs(), config)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y == 0, 1 - P1))
    assert got["precision"] == pytest.approx(skm.precision_score(Y == 0, PRED == 0))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(Y == 0, 1 - P1))


def test_default_positive_class_is_the_larger_label() -> None:
    labels = np.array(["no", "yes"])
    y = labels[Y]
    outputs = Outputs(labels[PRED], np.column_stack([1 - P1, P1]), labels)
    config = _binary_config(positive_class=None)
    got = compute_metrics(y, outputs, config)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y == "yes", P1))
    assert got["recall"] == pytest.approx(skm.recall_score(y == "yes", PRED == 1))


def test_multiclass_metrics_equal_sklearn() -> None:
    y = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0])
    proba = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.2, 0.7],
            [0.3, 0.4, 0.3],
            [0.1, 0.8, 0.1],
            [0.4, 0.4, 0.2],
            [0.2, 0.2, 0.6],
            [0.5, 0.3, 0.2],
            [0.6, 0.1, 0.3],
        ]
    )
    pred = proba.argmax(axis=1)
    got = compute_metrics(y, Outputs(pred, proba, np.array([0, 1, 2])), _multiclass_config())
    assert got["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_regression_metrics_equal_numpy() -> None:
    y = np.array([3.0, -0.5, 2.0, 7.0, 4.0])
    pred = np.array([2.5, 0.0, 2.0, 8.0, 3.0])
    got = compute_metrics(y, Outputs(pred), _regression_config())
    errors = y - pred
    assert got["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert got["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert got["median_absolute_error"] == pytest.approx(np.median(np.abs(errors)))
    assert got["r2"] == pytest.approx(1 - np.sum(errors**2) / np.sum((y - y.mean()) ** 2))


def test_one_class_rows_give_nan_not_a_made_up_number() -> None:
    config = _binary_config()
    ones = Y == 1
    got = compute_metrics(Y[ones], _binary_outputs().subset(ones), config)
    assert math.isnan(got["roc_auc"])
    assert math.isnan(got["average_precision"])
    # Metrics that are defined on one class stay numbers.
    assert got["recall"] == pytest.approx((PRED[ones] == 1).mean())
    assert got["brier"] == pytest.approx(float(np.mean((P1[ones] - 1) ** 2)))


def test_no_rows_give_nan() -> None:
    empty = np.zeros(len(Y), dtype=bool)
    assert math.isnan(
        metric_value("roc_auc", Y[empty], _binary_outputs().subset(empty), _binary_config())
    )


def test_json_ready_turns_nan_and_numpy_into_json() -> None:
    value = {
        "roc_auc": math.nan,
        "rows": np.int64(3),
        "score": np.float64(0.25),
        "bad": np.float64("inf"),
        "nested": [np.float32("nan"), (1, math.inf)],
        7: "key",
    }
    ready = json_ready(value)
    assert ready == {
        "roc_auc": None,
        "rows": 3,
        "score": 0.25,
        "bad": None,
        "nested": [None, [1, None]],
        "7": "key",
    }
    json.dumps(ready, allow_nan=False)  # strict JSON


# --- slices --------------------------------------------------------------------------------


def test_slice_metrics_per_value_with_small_slices_marked() -> None:
    rng = np.random.default_rng(0)
    n_big, n_small = 40, 6
    y = np.concatenate([rng.integers(0, 2, n_big), np.ones(n_small, dtype=int)])
    scores = rng.random(n_big + n_small)
    holdout = pd.DataFrame(
        {
            "high_income": y,
            "gender": ["Female"] * n_big + ["Male"] * n_small,
            "educcat": ["Bachelor"] * 20 + [None] * 26,
        }
    )
    outputs = Outputs((scores >= 0.5).astype(int), np.column_stack([1 - scores, scores]), CLASSES)
    config = _binary_config(slices=["gender", "educcat"], min_slice_rows=30)
    rows = slice_metrics(holdout, outputs, config)

    by_key = {(r["column"], r["value"]): r for r in rows}
    assert set(by_key) == {
        ("gender", "Female"),
        ("gender", "Male"),
        ("educcat", "Bachelor"),
        ("educcat", "(missing)"),
    }
    female, male = by_key[("gender", "Female")], by_key[("gender", "Male")]
    assert (female["rows"], female["enough_rows"]) == (n_big, True)
    assert (male["rows"], male["enough_rows"]) == (n_small, False)
    mask = holdout["gender"].eq("Female").to_numpy()
    assert female["roc_auc"] == pytest.approx(skm.roc_auc_score(y[mask], scores[mask]))
    assert female["accuracy"] == pytest.approx(skm.accuracy_score(y[mask], outputs.pred[mask]))
    assert math.isnan(male["roc_auc"])  # only positives in this slice
    assert json_ready(male)["roc_auc"] is None
    assert by_key[("educcat", "(missing)")]["rows"] == 26
    assert sum(r["rows"] for r in rows if r["column"] == "educcat") == len(holdout)

    # A slice exactly at the minimum counts as enough.
    at_minimum = _binary_config(slices=["gender"], min_slice_rows=n_small)
    marks = {r["value"]: r["enough_rows"] for r in slice_metrics(holdout, outputs, at_minimum)}
    assert marks == {"Female": True, "Male": True}


def test_compare_is_challenger_minus_champion() -> None:
    table = compare({"roc_auc": 0.8, "log_loss": 0.4}, {"roc_auc": 0.75})
    assert table["roc_auc"]["difference"] == pytest.approx(0.05)
    assert table["roc_auc"]["higher_is_better"] is True
    assert table["log_loss"]["higher_is_better"] is False
    assert math.isnan(table["log_loss"]["champion"])
    assert compare_with_champion.fn({"roc_auc": 0.8}, None) is None


# --- plots ---------------------------------------------------------------------------------


def _written_pngs(tmp_path: Path, figures: dict[str, Any]) -> dict[str, bytes]:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    with store.open_run("plots-test", "run-1") as run:
        for name, figure in figures.items():
            run.write_figure(f"plots/{name}", figure)
        run.commit()
    assert store.verify("plots-test", "run-1") == []
    return {name: store.read_bytes("plots-test", "run-1", f"plots/{name}") for name in figures}


def _assert_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    image = mpimg.imread(io.BytesIO(data), format="png")
    assert image.ndim == 3
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert float(np.ptp(image[..., :3])) > 0  # something was drawn


def test_binary_plots_are_valid_png_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    scores = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    outputs = Outputs((scores >= 0.5).astype(int), np.column_stack([1 - scores, scores]), CLASSES)
    figures = plots(y, outputs, _binary_config())
    assert set(figures) == {
        "confusion_matrix.png",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
    }
    for data in _written_pngs(tmp_path, figures).values():
        _assert_png(data)


def test_one_class_holdout_only_gets_a_confusion_matrix() -> None:
    ones = Y == 1
    figures = plots(Y[ones], _binary_outputs().subset(ones), _binary_config())
    assert set(figures) == {"confusion_matrix.png"}


def test_regression_plots_are_valid_png_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=100)
    pred = y + rng.normal(scale=0.3, size=100)
    figures = plots(y, Outputs(pred), _regression_config())
    assert "residuals.png" in figures
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        _assert_png(buffer.getvalue())
        assert name.endswith(".png")


# --- gate ----------------------------------------------------------------------------------


def test_floor_for_higher_is_better_metrics() -> None:
    assert floor_check("roc_auc", 0.75, 0.75).passed  # the limit itself passes
    assert floor_check("roc_auc", 0.9, 0.75).passed
    failed = floor_check("roc_auc", 0.74, 0.75)
    assert not failed.passed
    assert failed.comparison == ">="
    assert "roc_auc" in failed.detail


def test_log_loss_limit_is_a_ceiling() -> None:
    assert floor_check("log_loss", 0.4, 0.5).passed
    assert floor_check("log_loss", 0.5, 0.5).passed
    high = floor_check("log_loss", 0.6, 0.5)
    assert not high.passed
    assert high.comparison == "<="
    assert not floor_check("rmse", 10.0, 5.0).passed


@pytest.mark.parametrize("value", [math.nan, math.inf, None])
def test_undefined_value_fails_the_gate(value: float | None) -> None:
    check = floor_check("roc_auc", value, 0.5)  # type: ignore[arg-type]
    assert not check.passed
    assert check.value is None
    assert "undefined" in check.detail
    json.dumps(check.to_dict(), allow_nan=False)


def test_decide_needs_every_floor_and_says_why() -> None:
    config = _regression_config()  # floors: rmse <= 5, r2 >= 0.5
    good = decide(floor_checks({"rmse": 4.0, "r2": 0.6, "mae": 1.0}, config), config)
    assert good.passed
    assert good.to_dict()["decision"] == "promote"

    bad = decide(floor_checks({"rmse": 4.0, "r2": math.nan, "mae": 1.0}, config), config)
    assert not bad.passed
    result = bad.to_dict()
    assert result["decision"] == "reject"
    assert len(result["reasons"]) == 1
    assert "r2" in result["reasons"][0]
    assert [c["name"] for c in result["checks"]] == ["floor:rmse", "floor:r2"]


def test_no_floors_no_floor_checks() -> None:
    config = _config(gate={"floors": {}})
    assert floor_checks({"roc_auc": 0.1}, config) == []
    assert decide([], config).passed


def test_importing_the_library_leaves_matplotlib_alone_and_plots_still_render() -> None:
    """No backend is chosen at import (it would override the user's MPLBACKEND for the whole
    process); the plots are bare Figures that render PNG through Agg regardless."""
    import os
    import subprocess
    import sys

    script = (
        "import io, matplotlib, numpy as np, sys\n"
        "import modelcycle.evaluation, modelcycle.training, modelcycle.artifacts\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "from modelcycle.evaluation._metrics import _figure\n"
        "fig, ax = _figure('t'); ax.plot([0, 1], [1, 0]); buffer = io.BytesIO()\n"
        "fig.savefig(buffer, format='png'); sys.stdout.buffer.write(buffer.getvalue()[:8])\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=False, cwd=root
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == PNG_SIGNATURE


def test_counted_metrics_equal_sklearn_including_zero_division() -> None:
    """F1, precision, recall and Brier are computed from counts, not scikit-learn's functions
    (which sort every row to find the labels); the same numbers, 0 where undefined."""
    rng = np.random.default_rng(3)
    scores = rng.random(5_000)
    y = (rng.random(5_000) < scores).astype(int)
    proba = np.column_stack([1 - scores, scores])
    for pred in ((scores > 0.5).astype(int), np.zeros(5_000, int)):  # none predicted positive
        got = compute_metrics(y, Outputs(pred, proba, np.array([0, 1])), _binary_config())
        for name, fn in (
            ("f1", skm.f1_score),
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
        ):
            assert got[name] == pytest.approx(fn(y, pred, zero_division=0), abs=1e-12), name
        assert got["brier"] == pytest.approx(skm.brier_score_loss(y, scores), abs=1e-12)
    assert got["precision"] == 0.0 and got["f1"] == 0.0  # the undefined case counts 0
