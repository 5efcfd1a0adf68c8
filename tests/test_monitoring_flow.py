"""The monitoring flow end to end under the Prefect test harness, on real (sampled) demo data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from modelcycle.incidents import IncidentLog, IncidentStatus

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
        "age", "prestg10", "childs", "occrecode", "wrkstat", "educcat", "maritalcat"
    }
    quality = json.loads((folder / "quality.json").read_text())
    assert quality["labelled_rows"] == 1500
    assert set(quality["estimated"]) == {"accuracy", "roc_auc"}
    # The label-free estimate lands near the realised figure on unshifted data.
    assert abs(quality["estimated"]["accuracy"] - quality["realised"]["accuracy"]) < 0.05
    assert IncidentLog(state.registry_url).list() == []
