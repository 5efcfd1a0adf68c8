"""Monitoring decisions that weigh their evidence: realised quality judged on its bootstrap
interval, drift weighed by what the model uses. Generated tables whose truth is known by
construction: 7 features of which x1 and x2 carry almost all the signal."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import write_config

from modelcycle import evaluation, monitoring
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.errors import ConfigError
from modelcycle.monitoring import (
    ColumnDrift,
    ColumnKind,
    DriftResult,
    Method,
    Reference,
    Status,
    Window,
)
from modelcycle.registry import IncidentLog

MODEL = "signal-i11"
NUMERIC = ["x1", "x2", "x3", "x4", "x5"]
CATEGORICAL = ["c1", "c2"]


def _table(n: int, seed: int) -> pd.DataFrame:
    """y depends strongly on x1 and x2, faintly on x3, not at all on the rest."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(size=n) for c in NUMERIC})
    frame["c1"] = rng.choice(["a", "b", "c"], size=n)
    frame["c2"] = rng.choice(["u", "v"], size=n)
    logit = 3.0 * frame["x1"] + 3.0 * frame["x2"] + 0.2 * frame["x3"]
    frame["y"] = (logit + rng.logistic(size=n) > 0).astype(int)
    return frame


def _raw_config(source: str, **monitoring_spec: Any) -> dict[str, Any]:
    return {
        "name": MODEL,
        "owner": "tests",
        "description": "generated: two of seven features carry the signal",
        "intended_use": "tests",
        "task": "binary_classification",
        "data": {"source": source},
        "target": "y",
        "features": {"numeric": NUMERIC, "categorical": CATEGORICAL},
        "split": {"strategy": "stratified", "seed": 0},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "evaluation": {
            "primary_metric": "accuracy",
            "extra_metrics": ["roc_auc"],
            "positive_class": 1,
            "importance_repeats": 3,
        },
        "gate": {"non_inferiority": {"bootstrap": 200}, "robustness": {"rows": 500}},
        "monitoring": {"min_rows": 100, **monitoring_spec},
    }


def _config(**monitoring_spec: Any) -> PipelineConfig:
    return parse_config(_raw_config("unused.parquet", **monitoring_spec))


# --- pure: quality intervals and thresholds ----------------------------------------------


def _outputs_with_accuracy(n: int, wrong: int, seed: int) -> tuple[np.ndarray, evaluation.Outputs]:
    """Labels and outputs where exactly `wrong` of `n` predictions are wrong."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    pred = y.copy()
    flipped = rng.choice(n, size=wrong, replace=False)
    pred[flipped] = 1 - pred[flipped]
    score = np.where(pred == 1, 0.8, 0.2)
    return y, evaluation.Outputs(pred, np.c_[1 - score, score], np.array([0, 1]))


def _window(frame: pd.DataFrame) -> Window:
    return Window(frame, "generated", [], len(frame), [], None)


def _quality(y: np.ndarray, outputs: evaluation.Outputs, holdout: dict, config, rows=None):
    """assess_quality on a window whose first len(y) rows carry labels."""
    rows = rows or len(y)
    labels = np.full(rows, np.nan)
    labels[: len(y)] = y
    frame = pd.DataFrame({"y": labels})
    pred = np.r_[outputs.pred, np.zeros(rows - len(y), int)]
    proba = np.r_[outputs.proba, np.tile([0.5, 0.5], (rows - len(y), 1))]
    frame_out = pd.DataFrame({"prediction": pred, "score": proba[:, 1]})
    reference = Reference(pd.DataFrame(), pd.DataFrame(), {"holdout_metrics": holdout})
    return monitoring.assess_quality(
        _window(frame), frame_out, proba, np.array([0, 1]), reference, config
    )


def _no_drift() -> DriftResult:
    return DriftResult([], 0.5)


def test_a_drop_inside_the_interval_is_within_noise_and_one_outside_is_a_quality_incident():
    config = _config()  # accuracy: max_quality_drop 0.05, absolute (higher is better)
    holdout = {"accuracy": 0.90, "roc_auc": 0.90}
    # 300 rows at 0.833: past the limit 0.85, but the 95 % interval reaches about 0.875.
    y, outputs = _outputs_with_accuracy(300, 50, seed=1)
    quality = _quality(y, outputs, holdout, config)
    low, high = quality.intervals["accuracy"]["low"], quality.intervals["accuracy"]["high"]
    assert quality.realised["accuracy"] == pytest.approx(250 / 300)
    half = 1.96 * math.sqrt(250 / 300 * 50 / 300 / 300)  # the normal approximation's
    assert high - low == pytest.approx(2 * half, rel=0.15)
    assert low < 0.85 < high
    (check,) = [c for c in quality.checks if c.metric == "accuracy"]
    assert check.verdict == "within_noise" and check.limit == pytest.approx(0.85)
    decision = monitoring.decide(_no_drift(), None, quality, [], config)
    assert decision.status == Status.ok and decision.incident_kinds == []
    assert any("within noise" in r and "accuracy" in r for r in decision.reasons)

    # 3,000 rows at 0.75: the whole interval is below 0.85.
    y, outputs = _outputs_with_accuracy(3000, 750, seed=2)
    quality = _quality(y, outputs, holdout, config)
    (check,) = [c for c in quality.checks if c.metric == "accuracy"]
    assert check.verdict == "breach" and check.high < 0.85
    decision = monitoring.decide(_no_drift(), None, quality, [], config)
    assert decision.status == Status.drift and decision.incident_kinds == ["quality"]
    assert decision.severities == {"quality": "high"}


def test_a_gate_floor_crossed_by_the_whole_interval_is_critical_and_within_noise_is_not():
    raw = _raw_config("unused.parquet")
    raw["gate"]["floors"] = {"accuracy": 0.80}
    config = parse_config(raw)
    holdout = {"accuracy": 0.81}
    y, outputs = _outputs_with_accuracy(400, 84, seed=3)  # 0.79: below 0.80, inside noise
    quality = _quality(y, outputs, holdout, config)
    floor = next(c for c in quality.checks if c.rule == "floor")
    assert floor.verdict == "within_noise"
    assert monitoring.decide(_no_drift(), None, quality, [], config).incident_kinds == []
    y, outputs = _outputs_with_accuracy(4000, 1200, seed=4)  # 0.70
    quality = _quality(y, outputs, holdout, config)
    decision = monitoring.decide(_no_drift(), None, quality, [], config)
    assert decision.severities == {"quality": "critical"}
    assert any("gate floor 0.8" in r for r in decision.reasons)


def test_per_metric_thresholds_and_relative_error_metrics():
    config = _config(max_quality_drop=0.02, quality={"roc_auc": {"max_drop": 0.3}})
    assert config.monitoring.quality_threshold("roc_auc") == (0.3, False)
    assert config.monitoring.quality_threshold("accuracy") == (0.02, False)
    # Error metrics are relative unless told otherwise: 2 % of the holdout's log loss.
    assert config.monitoring.quality_threshold("log_loss") == (0.02, True)
    raw = _raw_config("unused.parquet", quality={"log_loss": {"max_drop": 0.1, "relative": False}})
    with pytest.raises(ConfigError, match="'log_loss' is not measured: add it to evaluation"):
        parse_config(raw)
    raw["evaluation"]["extra_metrics"].append("log_loss")
    assert parse_config(raw).monitoring.quality_threshold("log_loss") == (0.1, False)
    raw["monitoring"]["quality"] = {"rmse": {"max_drop": 1}}
    with pytest.raises(ConfigError, match="'rmse' is not a binary_classification metric"):
        parse_config(raw)


def _regression_config() -> PipelineConfig:
    return parse_config(
        {
            "name": "prices",
            "owner": "t",
            "description": "generated",
            "intended_use": "tests",
            "task": "regression",
            "data": {"source": "unused.csv"},
            "target": "y",
            "features": {"numeric": ["x1"]},
            "split": {"strategy": "random"},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "evaluation": {"primary_metric": "mae", "extra_metrics": ["rmse", "r2"]},
        }
    )


def test_a_regression_window_from_the_training_distribution_is_ok():
    """Errors in the thousands: an absolute 0.05 made every such window a warning."""
    config = _regression_config()
    rng = np.random.default_rng(5)
    n = 2000
    y = rng.normal(50_000, 8_000, size=n)
    pred = y + rng.normal(0, 600, size=n)  # the holdout's own error level
    holdout_errors = rng.normal(0, 600, size=n)
    holdout_y = rng.normal(50_000, 8_000, size=n)
    holdout = {
        "mae": float(np.abs(holdout_errors).mean()),
        "rmse": float(np.sqrt((holdout_errors**2).mean())),
        "r2": float(1 - (holdout_errors**2).sum() / ((holdout_y - holdout_y.mean()) ** 2).sum()),
    }
    frame = pd.DataFrame({"y": y})
    outputs = pd.DataFrame({"prediction": pred})
    reference = Reference(pd.DataFrame(), pd.DataFrame(), {"holdout_metrics": holdout})
    quality = monitoring.assess_quality(_window(frame), outputs, None, None, reference, config)
    assert abs(quality.realised["mae"] - holdout["mae"]) > 0.05  # the old rule's warning
    assert {c.verdict for c in quality.checks} <= {"ok", "within_noise"}
    decision = monitoring.decide(_no_drift(), None, quality, [], config)
    assert decision.status == Status.ok, decision.reasons


def test_large_windows_scale_a_sampled_bootstrap_to_the_window():
    """The m-out-of-n interval on 5,000 of 60,000 rows matches the full bootstrap."""
    y, outputs = _outputs_with_accuracy(60_000, 9_000, seed=6)
    realised = evaluation.compute_metrics(y, outputs, _config())
    full = monitoring.realised_intervals(
        y, outputs, realised, _config(quality_interval={"resamples": 300, "max_rows": 100_000})
    )
    scaled = monitoring.realised_intervals(
        y, outputs, realised, _config(quality_interval={"resamples": 300, "max_rows": 5_000})
    )
    for metric in ("accuracy", "roc_auc"):
        width = full[metric]["high"] - full[metric]["low"]
        assert scaled[metric]["high"] - scaled[metric]["low"] == pytest.approx(width, rel=0.2)
        assert scaled[metric]["low"] < realised[metric] < scaled[metric]["high"]


def test_low_label_coverage_is_reported_and_not_judged():
    config = _config(min_label_coverage=0.5)
    y, outputs = _outputs_with_accuracy(300, 150, seed=7)  # accuracy 0.5: far past any limit
    quality = _quality(y, outputs, {"accuracy": 0.9}, config, rows=1000)
    assert quality.label_coverage == pytest.approx(0.3) and quality.window_rows == 1000
    assert quality.checks == [] and quality.realised["accuracy"] == pytest.approx(0.5)
    decision = monitoring.decide(_no_drift(), None, quality, [], config)
    assert decision.status == Status.ok and decision.incident_kinds == []
    assert any(
        "label coverage 30% is below monitoring.min_label_coverage 50%" in r
        for r in decision.reasons
    )


# --- pure: drift weighed by importance -------------------------------------------------------


def _drift(drifted: set[str], weights: dict[str, float] | None) -> DriftResult:
    columns = [
        ColumnDrift(
            c,
            ColumnKind.numeric,
            Method.wasserstein,
            0.5 if c in drifted else 0.01,
            0.1,
            c in drifted,
            5000,
            2000,
            100,
        )
        for c in [*NUMERIC, *CATEGORICAL]
    ]
    return DriftResult(columns, 0.5, weights=weights)


def test_a_critical_column_alone_raises_drift():
    config = _config(columns={"c2": {"critical": True}}, drift_share_weighted=None)
    decision = monitoring.decide(_drift({"c2"}, None), None, None, [], config)
    assert decision.status == Status.drift and decision.incident_kinds == ["drift"]
    assert "critical feature(s) drifted: c2" in decision.reasons


def test_without_recorded_importance_the_plain_share_decides_and_says_so():
    config = _config()
    decision = monitoring.decide(_drift({"x1", "x2"}, None), None, None, [], config)
    assert decision.status == Status.warning
    assert any("records no permutation importance" in r for r in decision.reasons)
    weighted = _drift({"x1", "x2"}, {"x1": 0.3, "x2": 0.3, "x3": 0.01})
    assert weighted.weighted_share == pytest.approx(0.6 / 0.61)
    assert monitoring.decide(weighted, None, None, [], config).status == Status.drift


# --- the flow, on a generated champion ------------------------------------------------------


@pytest.fixture(scope="module")
def signal(tmp_path_factory, prefect_harness):
    """A champion trained by the training flow on 4,000 generated rows."""
    from modelcycle.settings import get_settings

    root = tmp_path_factory.mktemp("signal")
    source = root / "train.parquet"
    _table(4000, 0).to_parquet(source, index=False)
    config = write_config(root, _raw_config(str(source), quality={"roc_auc": {"max_drop": 0.3}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELCYCLE_HOME", str(root / "state"))
        from flows.training import training

        outcome = training(config_path=str(config))
        assert outcome["status"] == "champion"
        yield get_settings(), outcome, config


@pytest.fixture
def state(signal, monkeypatch):
    settings, _, _ = signal
    monkeypatch.setenv("MODELCYCLE_HOME", str(settings.home))
    return settings


def _monitor(window: Path, **kwargs):
    from flows.monitoring import monitoring as monitoring_flow

    return monitoring_flow(model_name=MODEL, window=str(window), **kwargs)


def _drift_events(window: str) -> list:
    """This window's drift events, polled: the server stores events asynchronously."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[monitoring.DRIFT_EVENT]),
        resource=EventResourceFilter(id=[f"modelcycle.model.{MODEL}"]),
    )
    found: list = []
    with get_client(sync_client=True) as client:
        for _ in range(60):
            page = client.read_events(filter=event_filter, limit=50)
            found = [e for e in page.events if e.payload.get("window") == window]
            if found:
                break
            time.sleep(0.25)
    return found


def test_training_records_the_importance_with_the_reference(signal):
    _, outcome, _ = signal
    meta = json.loads(Path(outcome["run_folder"], "reference", "reference.json").read_text())
    importance = meta["importance"]
    assert importance["metric"] == "accuracy" and set(importance["mean"]) == {
        *NUMERIC,
        *CATEGORICAL,
    }
    ranked = sorted(importance["mean"], key=importance["mean"].get, reverse=True)
    assert set(ranked[:2]) == {"x1", "x2"}  # the construction's truth
    weights = {k: max(v, 0) for k, v in importance["mean"].items()}
    assert (weights["x1"] + weights["x2"]) / sum(weights.values()) > 0.8


def test_importance_weighted_drift_catches_a_shift_in_the_two_columns_that_matter(state, tmp_path):
    window = _table(2000, 11).drop(columns="y")
    window = window.assign(x1=window["x1"] + 1.0, x2=window["x2"] + 1.0)
    path = tmp_path / "shifted.parquet"
    window.to_parquet(path, index=False)

    outcome = _monitor(path)
    assert sorted(outcome["drifted_columns"]) == ["x1", "x2"]
    assert outcome["share_drifted"] == pytest.approx(2 / 7)
    assert outcome["weighted_share"] > 0.8
    assert outcome["status"] == "drift", outcome["reasons"]
    assert any("carry" in r and "drift_share_weighted 50%" in r for r in outcome["reasons"])
    (incident,) = outcome["incidents"]
    assert incident["kind"] == "drift" and incident["opened"]
    assert IncidentLog(state.registry_url).get(incident["id"]).kind == "drift"
    (event,) = _drift_events(str(path))
    assert event.payload["drifted_columns"] == outcome["drifted_columns"]
    assert event.payload["weighted_share"] == pytest.approx(outcome["weighted_share"])

    # The same drift under the plain 50 % share rule alone is only a warning.
    drift = json.loads(Path(outcome["run_folder"], "drift.json").read_text())
    assert drift["features"]["dataset_drift"] is False
    raw = _raw_config("unused.parquet", drift_share_weighted=None)
    plain = write_config(tmp_path, raw, "plain.yaml")
    again = _monitor(path, config_path=str(plain))
    assert again["status"] == "warning", again["reasons"]
    assert again["incidents"] == [] and again["event_id"] is None


def _labelled_by_the_champion(state, rows: int, wrong: int, seed: int) -> pd.DataFrame:
    """Fresh rows from the training distribution, labelled with the champion's own answers
    except for exactly `wrong` rows: the realised accuracy is known before monitoring."""
    from modelcycle.artifacts import load_model
    from modelcycle.registry import Registry

    record = Registry(state.registry_url).champion(MODEL)
    pipeline = load_model(record.model_location, record.model_sha256)
    frame = _table(rows, seed)
    pred = np.asarray(pipeline.predict(frame[[*NUMERIC, *CATEGORICAL]]))
    flipped = np.random.default_rng(seed).choice(rows, size=wrong, replace=False)
    pred[flipped] = 1 - pred[flipped]
    return frame.assign(y=pred)


def test_a_quality_drop_inside_its_interval_opens_no_incident_and_one_outside_does(
    state, signal, tmp_path
):
    _, trained, _ = signal
    holdout = trained["metrics"]["accuracy"]
    limit = holdout - 0.05  # max_quality_drop, absolute for accuracy
    # 2,000 rows (fewer would drift by chance under Evidently's distance rule), of which 300
    # labelled, 0.065 below the holdout: past the limit, inside the 95 % interval.
    wrong = round(300 * (1 - holdout + 0.065))
    labelled = _labelled_by_the_champion(state, 300, wrong, seed=21)
    rest = _table(1700, 24).assign(y=np.nan)
    inside = tmp_path / "inside.parquet"
    pd.concat([labelled, rest], ignore_index=True).to_parquet(inside, index=False)
    outcome = _monitor(inside)
    quality = outcome["quality"]
    assert quality["realised"]["accuracy"] == pytest.approx(1 - wrong / 300)
    assert quality["realised"]["accuracy"] < limit < quality["intervals"]["accuracy"]["high"]
    assert quality["label_coverage"] == pytest.approx(0.15)
    assert outcome["status"] == "ok", outcome["reasons"]
    assert outcome["incidents"] == []
    assert any("within noise" in r for r in outcome["reasons"])

    # 3,000 rows of which 2,400 labelled, 0.15 below the holdout: the whole interval is past.
    wrong = round(2400 * (1 - holdout + 0.15))
    frame = _labelled_by_the_champion(state, 3000, 0, seed=22)
    labelled = _labelled_by_the_champion(state, 2400, wrong, seed=23)
    outside_frame = pd.concat([labelled, frame.iloc[2400:].assign(y=np.nan)], ignore_index=True)
    outside = tmp_path / "outside.parquet"
    outside_frame.to_parquet(outside, index=False)
    outcome = _monitor(outside)
    quality = outcome["quality"]
    assert quality["label_coverage"] == pytest.approx(0.8)
    assert quality["intervals"]["accuracy"]["high"] < limit
    assert outcome["status"] == "drift", outcome["reasons"]
    (incident,) = outcome["incidents"]
    assert incident["kind"] == "quality" and incident["opened"]
    recorded = IncidentLog(state.registry_url).get(incident["id"])
    assert recorded.severity == "high"
    assert outcome["drifted_columns"] == []  # nothing moved but the relation to the label
    folder = Path(outcome["run_folder"])
    checks = json.loads((folder / "quality.json").read_text())["checks"]
    assert {(c["metric"], c["rule"], c["verdict"]) for c in checks} >= {
        ("accuracy", "max_drop", "breach")
    }
