"""Bad windows: a clear message naming the file or column, a failed or flagged run, and
nothing recorded by a run that failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict, write_config

from modelcycle.errors import DataError, DataValidationError, RegistryError
from modelcycle.registry import IncidentLog

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL = "gss-income"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_parquet, prefect_harness):
    """One champion for every test here (none of them changes it)."""
    from modelcycle.settings import get_settings

    root = tmp_path_factory.mktemp("bad-input")
    raw = demo_config_dict()
    raw["data"] = {"source": str(small_parquet), "time_range": {"end": 2000}}
    raw["model"].pop("search")
    raw["model"]["params"]["max_iter"] = 30
    raw["monitoring"] = {"min_rows": 100}
    config = write_config(root, raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELCYCLE_HOME", str(root / "state"))
        from flows.training import training

        assert training(config_path=str(config))["status"] == "champion"
        yield get_settings()


@pytest.fixture(scope="module")
def rows(small_parquet) -> pd.DataFrame:
    """Training-year rows: whatever goes wrong below is the input's fault, not drift."""
    return pd.read_parquet(small_parquet).sample(n=600, random_state=2).reset_index(drop=True)


@pytest.fixture
def state(trained, monkeypatch):
    monkeypatch.setenv("MODELCYCLE_HOME", str(trained.home))
    return trained


def _monitor(window, **kwargs):
    from flows.monitoring import monitoring

    return monitoring(model_name=MODEL, window=str(window), **kwargs)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "window.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _monitoring_runs(state) -> list[Path]:
    folder = Path(state.artifact_store) / "monitoring" / MODEL
    return (
        sorted(p for p in folder.glob("*") if not p.name.startswith(".")) if folder.is_dir() else []
    )


def test_missing_window_file_fails_naming_it_and_records_nothing(state, tmp_path):
    before = _monitoring_runs(state)
    missing = tmp_path / "gss-2031.parquet"
    with pytest.raises(DataError, match=r"gss-2031\.parquet: file not found"):
        _monitor(missing)
    with pytest.raises(DataError, match="no file matches"):
        _monitor(tmp_path / "nothing-*.parquet")
    assert _monitoring_runs(state) == before
    assert IncidentLog(state.registry_url).list() == []


def test_empty_window_fails(state, tmp_path, rows):
    empty_file = tmp_path / "empty.csv"
    empty_file.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: data file is empty"):
        _monitor(empty_file)
    no_rows = _write(tmp_path, rows.iloc[:0])
    with pytest.raises(DataError, match="no rows"):
        _monitor(no_rows)
    # Rows exist, but none in the requested time range.
    from modelcycle.config import TimeRange

    with pytest.raises(DataError, match="no rows in time range"):
        _monitor(_write(tmp_path, rows, "w.parquet"), time_range=TimeRange(start=2050))


def test_window_missing_a_feature_fails_naming_the_column(state, tmp_path, rows):
    before = _monitoring_runs(state)
    path = _write(tmp_path, rows.drop(columns=["prestg10"]))
    with pytest.raises(DataValidationError, match="missing column 'prestg10'"):
        _monitor(path)
    assert _monitoring_runs(state) == before


def test_column_of_the_wrong_type_is_a_finding_and_flags_the_run(state, tmp_path, rows):
    window = rows.assign(age=rows["age"].astype(str).where(rows.index % 2 == 0, "forty"))
    outcome = _monitor(_write(tmp_path, window, "w.csv"))
    messages = [f["message"] for f in outcome["findings"] if f["column"] == "age"]
    assert any("not of type numeric" in m for m in messages), messages
    assert outcome["status"] in ("warning", "drift")
    assert any("not of type numeric" in r for r in outcome["reasons"])


def test_unexpected_column_is_reported_not_fatal(state, tmp_path, rows):
    outcome = _monitor(_write(tmp_path, rows.assign(shoe_size=42)))
    assert outcome["status"] == "ok", outcome["reasons"]
    assert {
        "severity": "info",
        "column": "shoe_size",
        "message": "unexpected column 'shoe_size' is not used by the model; ignored",
    } in outcome["findings"]


def test_all_missing_column_is_untested_and_flagged(state, tmp_path, rows):
    outcome = _monitor(_write(tmp_path, rows.assign(childs=np.nan)))
    assert outcome["status"] == "warning"
    assert any("'childs': every value is missing" in r for r in outcome["reasons"])
    drift = pd.read_json(Path(outcome["run_folder"]) / "drift.json", typ="series")
    childs = next(c for c in drift["features"]["columns"] if c["column"] == "childs")
    assert childs["drifted"] is None and "no finite values" in childs["note"]


def test_window_below_min_rows_gives_no_verdict_and_says_so(state, tmp_path, rows):
    outcome = _monitor(_write(tmp_path, rows.iloc[:40]))
    assert outcome["status"] == "no_verdict"
    assert outcome["reasons"] == [
        "the window has 40 rows, fewer than monitoring.min_rows 100: no verdict"
    ]
    assert outcome["drifted_columns"] == [] and outcome["event_id"] is None
    assert outcome["html_report"] is None
    assert Path(outcome["run_folder"], "decision.json").is_file()


def test_no_champion_fails_clearly(state, tmp_path, rows):
    from flows.monitoring import monitoring

    with pytest.raises(RegistryError, match="'no-such-model' has no champion to monitor"):
        monitoring(model_name="no-such-model", window=str(_write(tmp_path, rows)))


def test_target_in_part_of_the_window_measures_quality_on_those_rows(state, tmp_path, rows):
    window = rows.assign(high_income=rows["high_income"].where(rows.index < 250))
    outcome = _monitor(_write(tmp_path, window))
    quality = outcome["quality"]
    assert quality["labelled_rows"] == 250
    assert quality["realised"]["accuracy"] is not None
    assert any("present for 250 of 600 rows" in f["message"] for f in outcome["findings"]), outcome[
        "findings"
    ]


def test_infinite_values_in_a_window_are_a_finding_not_a_crash(state, tmp_path, rows):
    """±inf reached the champion's scaler and crashed the run: no verdict, no incident."""
    window = rows.assign(
        age=rows["age"].where(rows.index % 50 != 0, np.inf),
        prestg10=rows["prestg10"].where(rows.index != 7, -np.inf),
    )
    outcome = _monitor(_write(tmp_path, window, "w.csv"))
    assert outcome["status"] in ("warning", "drift")
    findings = {f["column"]: f for f in outcome["findings"] if "infinite" in f["message"]}
    assert set(findings) == {"age", "prestg10"}, outcome["findings"]
    assert findings["age"]["severity"] == "warning"
    assert "12 of 600 values are infinite (inf)" in findings["age"]["message"]
    assert "1 of 600 values are infinite (-inf)" in findings["prestg10"]["message"]
    assert any("infinite" in r for r in outcome["reasons"]), outcome["reasons"]
    # The rest of the window was still judged: every feature has a drift verdict.
    drift = pd.read_json(Path(outcome["run_folder"]) / "drift.json", typ="series")
    judged = {c["column"]: c["drifted"] for c in drift["features"]["columns"]}
    assert judged["age"] is not None and judged["prestg10"] is not None
