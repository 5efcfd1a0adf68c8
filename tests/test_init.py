"""`modelcycle init` and `config validate` on generated tables: the inferred config is what the
data says, personal columns are suggested and left out, and the written file validates, trains
and monitors as written, for each task from CSV and from Parquet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from modelcycle.cli import app
from modelcycle.config import TaskType, load_config
from modelcycle.data import guess_task, infer_config, render_config

ROWS = 600


def _table(task: str, rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Two informative numbers and a category, noise, personal columns, a sensitive one and a
    day per row; the target follows the informative columns strongly, so a model clears the
    gate's default checks."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(50, 10, rows), rng.uniform(0, 1, rows)
    city = rng.choice(["Lyon", "Paris", "Nice"], rows)
    signal = (x1 - 50) / 4 + 6 * (x2 - 0.5) + np.where(city == "Paris", 2.0, 0.0)
    if task == "binary":
        target = (signal > 0.5).astype(int)
    elif task == "multiclass":
        target = np.select([signal < -2, signal < 2], ["low", "mid"], "high")
    else:
        target = 3 * signal + rng.normal(0, 0.5, rows)
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(rows) % 60, unit="D")
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows) + 1000,
            "contact": [f"person{i}@example.org" for i in range(rows)],
            "day": days.strftime("%Y-%m-%d"),
            "tenure": x1.round(1),
            "usage": x2,
            "visits": rng.integers(0, 6, rows),
            "city": city,
            "gender": rng.choice(["F", "M"], rows),
            "target": target,
        }
    )


def _write(table: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.assign(day=pd.to_datetime(table["day"])).to_parquet(path, index=False)
    return path


# --- inference ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "task"),
    [
        ("binary", TaskType.binary_classification),
        ("multiclass", TaskType.multiclass_classification),
        ("regression", TaskType.regression),
    ],
)
def test_the_task_follows_the_target(kind: str, task: TaskType) -> None:
    assert guess_task(_table(kind)["target"], "target") is task


def test_few_whole_numbers_are_classes_and_many_are_a_quantity() -> None:
    assert guess_task(pd.Series([1, 2, 3, 4, 5] * 20), "t") is TaskType.multiclass_classification
    assert guess_task(pd.Series(range(100)), "t") is TaskType.regression


def test_inferred_schema_comes_from_the_data(tmp_path: Path) -> None:
    table = _table("binary")
    table.loc[::10, "tenure"] = np.nan
    path = _write(table, tmp_path / "t.csv")
    inferred = infer_config(path, "target", source="t.csv", time_column="day")
    raw = inferred.raw
    assert raw["task"] == "binary_classification"
    assert raw["features"] == {"numeric": ["tenure", "usage", "visits"], "categorical": ["city"]}
    tenure = raw["columns"]["tenure"]
    low, high = table["tenure"].min(), table["tenure"].max()
    assert tenure["min"] < low and tenure["max"] > high  # a margin on both sides
    assert tenure["max"] - tenure["min"] < 1.5 * (high - low)
    assert tenure["max_missing_share"] > 0.1  # 10 % missing in the file
    assert raw["columns"]["visits"]["type"] == "integer"
    assert raw["columns"]["city"]["allowed"] == ["Lyon", "Nice", "Paris"]
    assert raw["columns"]["day"] == {"type": "datetime"}
    assert raw["split"] == {"strategy": "time"}
    assert raw["evaluation"]["positive_class"] == 1


def test_personal_and_sensitive_columns_are_suggested_and_left_out(tmp_path: Path) -> None:
    table = _table("binary").rename(columns={"contact": "notes"})  # e-mails under a plain name
    table["reach"] = [f"+33 6 12 34 {i % 100:02d} {i % 97:02d}" for i in range(ROWS)]
    table["full_name"] = "Ann Smith"
    path = _write(table, tmp_path / "t.csv")
    inferred = infer_config(path, "target", source="t.csv")
    pii = {g.name: g.pii for g in inferred.pii_suggestions}
    assert set(pii) == {"customer_id", "notes", "reach", "full_name"}
    assert "e-mail" in (pii["notes"] or "") and "phone" in (pii["reach"] or "")
    assert [g.name for g in inferred.sensitive_suggestions] == ["gender"]
    features = inferred.raw["features"]["numeric"] + inferred.raw["features"]["categorical"]
    assert not set(features) & {*pii, "gender"}
    text = render_config(inferred)
    assert "# pii_columns: [customer_id, notes, reach, full_name]" in text
    assert "# sensitive_columns: [gender]" in text
    written = yaml.safe_load(text)  # suggestions are comments: nothing switched on
    assert "pii_columns" not in written and "sensitive_columns" not in written


def test_a_column_name_cannot_break_out_of_its_comment(tmp_path: Path) -> None:
    table = _table("binary")
    table["x\nname: hijacked"] = 1  # a single value: left out, its name in a comment
    path = _write(table, tmp_path / "t.parquet")
    text = render_config(infer_config(path, "target", source="t.parquet"))
    assert yaml.safe_load(text)["name"] == "t"


def test_init_refuses_an_unknown_target_and_an_existing_file(tmp_path: Path) -> None:
    path = _write(_table("binary"), tmp_path / "t.csv")
    result = CliRunner().invoke(app, ["init", str(path), "--target", "nope"])
    assert result.exit_code == 1 and "--target: column 'nope' is not in" in result.output
    out = tmp_path / "t.yaml"
    out.write_text("kept")
    result = CliRunner().invoke(
        app, ["init", str(path), "--target", "target", "--output", str(out)]
    )
    assert result.exit_code == 1 and "already exists" in result.output
    assert out.read_text() == "kept"


# --- config validate: the real check, without Prefect ------------------------------------


VALIDATE_WITHOUT_PREFECT = """
import sys
from modelcycle.cli import app
from typer.testing import CliRunner
result = CliRunner().invoke(app, ["config", "validate", sys.argv[1]])
print(result.output)
print("exit", result.exit_code)
print("prefect imported:", any(m == "prefect" or m.startswith("prefect.") for m in sys.modules))
"""


def test_validate_lists_a_misspelled_estimator_and_a_missing_column_without_prefect(
    tmp_path: Path,
) -> None:
    path = _write(_table("binary"), tmp_path / "t.csv")
    config_path = tmp_path / "t.yaml"
    assert (
        CliRunner()
        .invoke(app, ["init", str(path), "--target", "target", "--output", str(config_path)])
        .exit_code
        == 0
    )
    raw = yaml.safe_load(config_path.read_text())
    raw["model"]["estimator"] = "sklearn.ensemble.HistGradientBoostingClasifier"
    raw["features"]["numeric"].append("income")  # not in the file
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    prefect_home = tmp_path / "prefect-home"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(prefect_home)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", VALIDATE_WITHOUT_PREFECT, str(config_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    out = done.stdout
    assert "exit 1" in out, out + done.stderr
    assert "2 problem(s)" in out
    assert "HistGradientBoostingClasifier" in out
    assert "missing required column 'income'" in out
    assert "prefect imported: False" in out
    assert not prefect_home.exists()  # no server database, no flow run


def test_validate_passes_a_config_whose_data_is_right(tmp_path: Path) -> None:
    path = _write(_table("regression"), tmp_path / "t.parquet")
    config_path = tmp_path / "t.yaml"
    CliRunner().invoke(app, ["init", str(path), "--target", "target", "--output", str(config_path)])
    result = CliRunner().invoke(app, ["config", "validate", str(config_path)])
    assert result.exit_code == 0, result.output
    assert f"data: {ROWS} rows of {path}" in result.output


# --- the round trip: init -> validate -> train -> monitor ---------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_init_validate_train_monitor(
    kind: str, suffix: str, tmp_path: Path, prefect_harness: None, state
) -> None:
    from flows.monitoring import monitoring
    from flows.training import training

    source = _write(_table(kind), tmp_path / f"{kind}{suffix}")
    config_path = tmp_path / "configs" / f"{kind}.yaml"  # another folder: the path is relative
    written = CliRunner().invoke(
        app,
        [
            *("init", str(source), "--target", "target", "--time-column", "day"),
            *("--output", str(config_path), "--name", f"init-{kind}"),
        ],
    )
    assert written.exit_code == 0, written.output
    assert not Path(yaml.safe_load(config_path.read_text())["data"]["source"]).is_absolute()
    validated = CliRunner().invoke(app, ["config", "validate", str(config_path)])
    assert validated.exit_code == 0, validated.output

    outcome = training(config_path=str(config_path))
    assert outcome["status"] == "champion", outcome
    assert (
        load_config(config_path).task.value
        == {
            "binary": "binary_classification",
            "multiclass": "multiclass_classification",
            "regression": "regression",
        }[kind]
    )

    window = _write(_table(kind, rows=300, seed=1), tmp_path / f"window{suffix}")
    watched = monitoring(model_name=f"init-{kind}", window=str(window))
    assert watched["version"] == outcome["version"]
    # Same distribution, another sample: a chance drift in one column of four is at most a
    # warning (drift needs half of them).
    assert watched["status"] in ("ok", "warning"), watched["reasons"]
    assert len(watched["drifted_columns"]) <= 1
