"""The monitoring flow on the prediction log, under the Prefect test harness: the logged
answers of a real champion judged without scoring again, late labels back-filled into an
earlier window, and a service breach after a promotion rolled back through the rollback flow.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from log_traffic import FEATURES, feedback, inputs_of, record, spaced, write

from modelcycle.artifacts import load_model
from modelcycle.registry import IncidentLog, Registry

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL = "gss-income"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def champion(small_config: Path, state):
    from flows.training import training

    outcome = training(config_path=str(small_config))
    assert outcome["status"] == "champion"
    return outcome


def _later_rows(demo_parquet: Path, n: int, seed: int) -> pd.DataFrame:
    table = pd.read_parquet(demo_parquet)
    later = table.loc[table["year"] >= 2010]
    return later.sample(n=n, random_state=seed).reset_index(drop=True)


def _answer(state, rows: pd.DataFrame, start: datetime, version: int = 1, latency=5.0):
    """What the service would log for these rows: the champion's own outputs."""
    record_ = Registry(state.registry_url).get_version(MODEL, version)
    pipeline = load_model(record_.model_location, record_.model_sha256)
    proba = pipeline.predict_proba(rows[FEATURES])[:, 1]
    labels = (proba >= 0.5).astype(int)
    inputs = inputs_of(rows, [*FEATURES, "gender"])
    return [
        record(MODEL, version, row, int(label), float(p), at, latency_ms=latency)
        for row, label, p, at in zip(inputs, labels, proba, spaced(start, len(rows)), strict=True)
    ]


def _monitor(**kwargs):
    from flows.monitoring import monitoring

    return monitoring(model_name=MODEL, source="log", **kwargs)


def test_log_window_judged_from_logged_answers_then_late_labels_back_filled(
    champion, state, demo_parquet
):
    root = state.home / "predictions"
    first_rows = _later_rows(demo_parquet, 600, seed=1)
    first = _answer(state, first_rows, T0)
    labelled = range(0, 600, 3)  # a third of the labels arrive the next day
    early = [
        feedback(MODEL, first[i]["id"], int(first_rows["high_income"][i]), T0 + timedelta(days=1))
        for i in labelled
    ]
    write(root, first, early, worker="day1")
    until = T0 + timedelta(days=1)

    outcome = _monitor(since=T0, until=until)

    # Realised quality on the labelled third, from the logged labels (computed here apart).
    picked = np.array(list(labelled))
    logged = np.array([first[i]["outputs"]["label"] for i in picked])
    truth = first_rows["high_income"].to_numpy()[picked]
    quality = outcome["quality"]
    assert quality["labelled_rows"] == 200 and quality["window_rows"] == 600
    assert quality["realised"]["accuracy"] == pytest.approx((logged == truth).mean())
    production = outcome["production"]
    assert production["labels"]["coverage"] == pytest.approx(1 / 3)
    assert production["labels"]["delay_hours"]["p50"] == pytest.approx(24 - 300 / 3600, abs=0.01)
    assert production["labels"]["estimated_unlabelled"]["accuracy"] > 0.5
    assert [v["version"] for v in production["versions"]] == [1]
    genders = {g["group"] for g in production["fairness"]["groups"]["gender"]}
    assert genders == {"Female", "Male"}
    folder = Path(outcome["run_folder"])
    saved = json.loads((folder / "production.json").read_text())
    assert saved["service"]["rows"][0]["rows"] == 600
    assert set(saved["plots"]) == {
        "plots/drift-per-feature.png",
        "plots/quality-estimated-vs-realised.png",
        "plots/selection-rate-per-group.png",
        "plots/latency.png",
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    for plot in saved["plots"]:
        assert (folder / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert plot in manifest["files"]

    # Day 2: the remaining labels of day 1 arrive, and new traffic; the scheduled run
    # (no since) starts where the first stopped and back-fills day 1's realised figures.
    rest = [
        feedback(
            MODEL, first[i]["id"], int(first_rows["high_income"][i]), until + timedelta(days=1)
        )
        for i in range(600)
        if i % 3
    ]
    second_rows = _later_rows(demo_parquet, 300, seed=2)
    second = _answer(state, second_rows, until + timedelta(hours=1))
    write(root, second, rest, worker="day2")

    again = _monitor(until=until + timedelta(days=2))

    assert again["quality"]["window_rows"] == 300  # only the new traffic
    history = again["production"]["history"]
    assert [h["until"] for h in history] == [
        until.isoformat(),
        (until + timedelta(days=2)).isoformat(),
    ]
    day1 = history[0]["versions"]["1"]
    assert day1["labelled"] == 600 and history[0]["backfills"] == 1
    all_logged = np.array([r["outputs"]["label"] for r in first])
    assert day1["realised"]["accuracy"] == pytest.approx(
        (all_logged == first_rows["high_income"].to_numpy()).mean()
    )
    assert day1["estimated"]["accuracy"] == pytest.approx(
        outcome["production"]["versions"][0]["estimated"]["accuracy"]
    )  # the estimate stays as first reported, beside the realised figure
    assert again["production"]["backfilled"]


def test_an_empty_log_window_fails_and_records_nothing(champion, state):
    write(state.home / "predictions", [])
    with pytest.raises(Exception, match="no predictions in this range"):
        _monitor(since=T0, until=T0 + timedelta(days=1))
    assert IncidentLog(state.registry_url).list(MODEL) == []
    assert not (Path(state.artifact_store) / "monitoring").exists()


def test_a_slow_service_after_a_promotion_opens_an_incident_and_rolls_back(
    small_config, state, demo_parquet, tmp_path
):
    from flows.training import training

    assert training(config_path=str(small_config))["status"] == "champion"
    second = training(config_path=str(small_config))
    assert second["status"] == "champion" and second["version"] == 2
    rows = _later_rows(demo_parquet, 300, seed=3)
    write(state.home / "predictions", _answer(state, rows, T0, version=2, latency=900.0))
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        yaml.safe_dump(
            {
                "monitoring": {
                    "service": {
                        "max_p99_ms": 250,
                        "min_requests": 100,
                        "rollback_within_hours": 2,
                    }
                }
            }
        )
    )

    outcome = _monitor(since=T0, until=T0 + timedelta(days=1), config_path=str(limits))

    assert outcome["status"] == "warning" or outcome["status"] == "drift"
    assert any("p99 latency 900.0 ms" in r for r in outcome["reasons"])
    (incident,) = [i for i in outcome["incidents"] if i["kind"] == "service"]
    assert IncidentLog(state.registry_url).get(incident["id"]).kind == "service"
    registry = Registry(state.registry_url)
    assert registry.champion(MODEL).version == 1
    entry = registry.audit_log(MODEL)[-1]
    assert entry.action == "rollback" and "automatic rollback by monitoring" in entry.reason
    assert outcome["run_folder"] in entry.reason  # the evidence, named in the audit
