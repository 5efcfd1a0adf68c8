"""The monitoring flow end to end under the Prefect test harness, on real (sampled) demo data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest

from modelcycle.registry import IncidentLog, IncidentStatus

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL = "gss-income"


@pytest.fixture(scope="module")
def demo_years(demo_parquet: Path) -> pd.DataFrame:
    return pd.read_parquet(demo_parquet)


@pytest.fixture
def champion(small_config: Path, state):
    """A freshly trained champion (the small demo config) in this test's state folder."""
    from flows.training import training

    outcome = training(config_path=str(small_config))
    assert outcome["status"] == "champion"
    return outcome


def _window(folder: Path, frame: pd.DataFrame, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame.to_parquet(path, index=False)
    return path


def _unseen_early_rows(demo_years: pd.DataFrame, small_parquet: Path, n: int) -> pd.DataFrame:
    """Rows from the training years that the small model never saw: no drift expected."""
    used = set(pd.read_parquet(small_parquet)["respondent_id"])
    early = demo_years.loc[(demo_years["year"] <= 2000) & ~demo_years["respondent_id"].isin(used)]
    return early.sample(n=n, random_state=1).reset_index(drop=True)


def _shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """Older, higher-prestige, more children, more graduates: several features move."""
    return frame.assign(
        age=(frame["age"] + 14).clip(upper=89),
        prestg10=(frame["prestg10"] + 12).clip(upper=90),
        childs=(frame["childs"] + 2).clip(upper=8),
        educcat="Graduate",
    )


def _monitor(window: Path | str, **kwargs):
    from flows.monitoring import monitoring

    return monitoring(model_name=MODEL, window=str(window), **kwargs)


def test_training_stores_the_reference_with_the_version(champion, small_config):
    folder = Path(champion["run_folder"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {
        "reference/data.parquet",
        "reference/predictions.parquet",
        "reference/reference.json",
    } <= set(manifest["files"])
    meta = json.loads((folder / "reference" / "reference.json").read_text())
    data = pd.read_parquet(folder / "reference" / "data.parquet")
    predictions = pd.read_parquet(folder / "reference" / "predictions.parquet")
    assert meta["rows"] == len(data) == len(predictions) == meta["training_rows"]
    assert meta["config_path"] == str(small_config.resolve())
    assert meta["holdout_metrics"] == pytest.approx(champion["metrics"])
    assert "respondent_id" not in data.columns  # PII never reaches the reference
    assert predictions["score"].between(0, 1).all()
    assert meta["calibration"]["method"] == "isotonic"


def test_stable_window_is_ok_with_report_and_artifacts(
    champion, state, demo_years, small_parquet, tmp_path
):
    path = _window(tmp_path / "w", _unseen_early_rows(demo_years, small_parquet, 1500), "a.parquet")
    outcome = _monitor(path)

    assert outcome["status"] == "ok", outcome["reasons"]
    assert outcome["drifted_columns"] == []
    folder = Path(outcome["run_folder"])
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"report.html", "drift.json", "decision.json", "quality.json", "manifest.json"} <= files
    html = (folder / "report.html").read_text()
    assert "modelcycle-sample-note" in html and "1,500 window rows" in html
    drift = json.loads((folder / "drift.json").read_text())
    assert {c["column"] for c in drift["features"]["columns"]} == {
        "age",
        "prestg10",
        "childs",
        "occrecode",
        "wrkstat",
        "educcat",
        "maritalcat",
    }
    quality = json.loads((folder / "quality.json").read_text())
    assert quality["labelled_rows"] == 1500
    assert set(quality["estimated"]) == {"accuracy", "roc_auc"}
    # The label-free estimate lands near the realised figure on unshifted data.
    assert abs(quality["estimated"]["accuracy"] - quality["realised"]["accuracy"]) < 0.05
    assert IncidentLog(state.registry_url).list() == []

    # The Prefect artifacts: the markdown table and the link to the HTML.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    # This run's artifacts only: other tests in the session publish under the same keys.
    run_id = UUID(Path(outcome["run_folder"]).name)
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"{MODEL}-monitoring", f"{MODEL}-monitoring-report"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            ),
        )
    latest = {}
    for artifact in sorted(found, key=lambda a: a.created):
        latest[artifact.key] = artifact
    markdown = latest[f"{MODEL}-monitoring"].data
    assert "# Monitoring gss-income v1: OK" in markdown
    assert "| column | kind | method | score | threshold | drifted |" in markdown
    assert "| age | numeric | Wasserstein distance (normed) |" in markdown
    assert outcome["html_report"] in markdown
    assert (
        Path(outcome["html_report"]).resolve().as_uri() in latest[f"{MODEL}-monitoring-report"].data
    )


def _drift_events(model: str, since_ids: set[str] | None = None, expect: int = 1):
    """Poll the server: events are stored asynchronously; read_events needs limit <= 50."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=["modelcycle.model.drift-detected"]),
        resource=EventResourceFilter(id=[f"modelcycle.model.{model}"]),
    )
    found = []
    with get_client(sync_client=True) as client:
        for _ in range(60):
            page = client.read_events(filter=event_filter, limit=50)
            found = [e for e in page.events if not since_ids or str(e.id) not in since_ids]
            if len(found) >= expect:
                break
            time.sleep(0.25)
    return found


def test_drift_opens_one_incident_then_updates_it_and_emits_the_event(
    champion, state, demo_years, small_parquet, small_config, tmp_path
):
    before = {str(e.id) for e in _drift_events(MODEL, expect=0)}
    base = _unseen_early_rows(demo_years, small_parquet, 1200)
    first = _window(tmp_path / "windows", _shifted(base.iloc[:600]), "gss-2030.parquet")
    second = _window(tmp_path / "windows", _shifted(base.iloc[600:]), "gss-2031.parquet")

    outcome = _monitor(first)
    assert outcome["status"] == "drift", outcome["reasons"]
    assert {"age", "prestg10", "childs", "educcat"} <= set(outcome["drifted_columns"])
    drift_incident = next(i for i in outcome["incidents"] if i["kind"] == "drift")
    assert drift_incident["opened"] is True

    # The event is on the server with the contract's resource and payload.
    events = _drift_events(MODEL, before)
    assert len(events) == 1
    event = events[0]
    assert event.resource.id == f"modelcycle.model.{MODEL}"
    assert event.resource.name == MODEL
    payload = event.payload
    assert payload["model_name"] == MODEL
    assert payload["version"] == 1
    assert payload["window"] == str(first)
    assert payload["status"] == "drift"
    assert set(payload["drifted_columns"]) == set(outcome["drifted_columns"])
    assert payload["config_path"] == str(small_config.resolve())
    assert payload["retrain_mode"] == "fine_tune"  # configs/demo.yaml monitoring.retrain_mode
    assert payload["retrain_overrides"] == {}  # monitoring.retrain_data: source (the default)

    # The same drift again (newest file only): the open incident grows, no new one.
    again = _monitor(tmp_path / "windows" / "gss-*.parquet", latest_only=True)
    assert again["status"] == "drift"
    assert {
        "id": drift_incident["id"],
        "kind": "drift",
        "opened": False,
        "occurrences": 2,
    } in again["incidents"]
    log = IncidentLog(state.registry_url)
    # One incident per kind (drift, and quality if the floor was also crossed), never two.
    kinds = [i.kind for i in log.list()]
    assert sorted(kinds) == sorted({i["kind"] for i in outcome["incidents"]})
    incident = log.get(drift_incident["id"])
    assert incident.status is IncidentStatus.OPEN
    assert [n.action for n in incident.notes] == ["opened", "recurred"]
    assert incident.notes[1].evidence_folder == again["run_folder"]
    assert json.loads(Path(again["run_folder"], "window.json").read_text())["files"] == [
        str(second)
    ]
    assert len(_drift_events(MODEL, before, expect=2)) == 2
