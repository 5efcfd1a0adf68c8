"""Time as time: ranges of dates, datetimes or numbers, on generated tables whose rows per day
are known, from Parquet timestamps, CSV ISO text and integer years; mismatches are refused."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from modelcycle import data
from modelcycle.cli import app
from modelcycle.config import PipelineConfig, TimeRange, TrainingOverrides, parse_config
from modelcycle.errors import ConfigError, DataError

DAYS = pd.date_range("2017-09-28", "2017-10-05", freq="D")  # 8 days
PER_DAY = 6  # rows per day, at 00:00, 04:00, ... 20:00


def _frame(time: pd.Series | np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(time)
    return pd.DataFrame(
        {
            "when": time,
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], n),
            "y": np.tile([0, 1], n // 2 + 1)[:n],
        }
    )


def _stamps() -> pd.Series:
    hours = pd.to_timedelta(np.arange(PER_DAY) * 4, unit="h")
    return pd.Series([day + h for day in DAYS for h in hours])


def _config(source: Path, time_range: dict[str, Any] | None, **columns: Any) -> PipelineConfig:
    return parse_config(
        {
            "name": "timed",
            "owner": "t",
            "description": "d",
            "intended_use": "u",
            "task": "binary_classification",
            "data": {"source": str(source), "time_range": time_range},
            "target": "y",
            "features": {"numeric": ["x"], "categorical": ["colour"]},
            "time_column": "when",
            "columns": columns,
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"primary_metric": "roc_auc"},
        }
    )


@pytest.fixture
def parquet_stamps(tmp_path: Path) -> Path:
    path = tmp_path / "stamps.parquet"
    _frame(_stamps()).to_parquet(path, index=False)
    return path


@pytest.fixture
def csv_iso(tmp_path: Path) -> Path:
    path = tmp_path / "stamps.csv"
    frame = _frame(_stamps().dt.strftime("%Y-%m-%dT%H:%M:%S"))
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fixture", ["parquet_stamps", "csv_iso"])
def test_a_date_range_keeps_whole_days_from_start_to_end(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    source = request.getfixturevalue(fixture)
    config = _config(source, {"start": "2017-10-01", "end": "2017-10-03"})
    table = data.load_table(config, source)
    # Three whole days, every hour of the last one included.
    assert len(table) == 3 * PER_DAY
    assert table["when"].min() == pd.Timestamp("2017-10-01 00:00")
    assert table["when"].max() == pd.Timestamp("2017-10-03 20:00")
    assert pd.api.types.is_datetime64_any_dtype(table["when"])


def test_a_datetime_end_is_that_instant(parquet_stamps: Path) -> None:
    config = _config(parquet_stamps, {"start": "2017-10-01T04:00", "end": "2017-10-01T12:00"})
    table = data.load_table(config, parquet_stamps)
    assert sorted(table["when"].dt.hour) == [4, 8, 12]


def test_a_csv_with_offsets_is_read_in_utc_and_says_so(tmp_path: Path) -> None:
    # Midnight in Paris (+02:00) is 22:00 UTC the day before.
    stamps = ["2017-10-01T00:00:00+02:00", "2017-10-01T12:00:00+02:00", "2017-10-02T00:30:00Z"]
    path = tmp_path / "zoned.csv"
    _frame(np.array(stamps * 4)).to_csv(path, index=False)
    config = _config(path, {"start": "2017-10-01", "end": "2017-10-01"})
    table = data.load_table(config, path)
    assert len(table) == 4  # only the noon rows: 10:00 UTC on the 1st
    assert str(table["when"].dt.tz) == "UTC"
    _, report = data.clean(table, config)
    assert report.time is not None and report.time["time_zone"] == "UTC"


def test_a_declared_time_format_is_used(tmp_path: Path) -> None:
    path = tmp_path / "european.csv"
    _frame(_stamps().dt.strftime("%d/%m/%Y %H:%M")).to_csv(path, index=False)
    config = _config(
        path,
        {"end": "2017-09-29"},
        when={"type": "datetime", "time_format": "%d/%m/%Y %H:%M"},
    )
    table = data.load_table(config, path)
    assert len(table) == 2 * PER_DAY
    assert data.validation_violations(table, config) == []


def test_text_that_is_not_a_timestamp_is_refused_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    frame = _frame(_stamps().dt.strftime("%Y-%m-%d"))
    frame.loc[3, "when"] = "last tuesday"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        data.load_table(_config(path, {"end": "2017-10-01"}), path)
    message = str(caught.value)
    assert "'when'" in message and "'last tuesday'" in message and "time_format" in message


@pytest.fixture
def years(tmp_path: Path) -> Path:
    path = tmp_path / "years.parquet"
    _frame(np.repeat(np.arange(2000, 2010), 5)).to_parquet(path, index=False)
    return path


def test_integer_years_select_by_number(years: Path) -> None:
    table = data.load_table(_config(years, {"start": 2003, "end": 2005}), years)
    assert sorted(set(table["when"])) == [2003, 2004, 2005]
    assert len(table) == 15


@pytest.mark.parametrize(
    ("source", "window", "says"),
    [
        ("years", {"end": "2005-12-31"}, "holds numbers"),
        ("parquet_stamps", {"end": 1.5e18}, "holds timestamps"),
        ("parquet_stamps", {"end": 1506816000}, "holds timestamps"),  # epoch seconds
        ("csv_iso", {"start": 2017}, "holds timestamps"),
    ],
)
def test_a_range_of_the_wrong_kind_is_refused_naming_both(
    source: str, window: dict[str, Any], says: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(source)
    with pytest.raises(DataError) as caught:
        data.load_table(_config(path, window), path)
    message = str(caught.value)
    assert "'when'" in message and says in message
    assert TimeRange.model_validate(window).describe() in message


def test_a_range_against_a_declared_column_type_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path / "x.csv", {"end": "2005-12-31"}, when={"type": "integer"})
    assert "time_range" in str(caught.value) and "declared integer" in str(caught.value)


def test_a_zoned_bound_on_a_column_without_zone_is_refused(parquet_stamps: Path) -> None:
    config = _config(parquet_stamps, {"end": "2017-10-01T00:00:00+02:00"})
    with pytest.raises(DataError, match="has a time zone"):
        data.load_table(config, parquet_stamps)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"start": 2000, "end": "2005"}, (2000.0, 2005.0)),
        ({"start": "2017-10-01"}, (date(2017, 10, 1), None)),
        ({"end": "2017-10-01T08:30"}, (None, datetime(2017, 10, 1, 8, 30))),
    ],
)
def test_bounds_keep_their_kind(given: dict[str, Any], expected: tuple[Any, Any]) -> None:
    window = TimeRange.model_validate(given)
    assert (window.start, window.end) == expected
    assert [type(v) for v in (window.start, window.end)] == [type(v) for v in expected]
    # What a run records (JSON) reads back the same.
    assert TimeRange.model_validate(window.model_dump(mode="json")) == window


@pytest.mark.parametrize(
    "given",
    [{"start": 2010, "end": 2000}, {"start": 2000, "end": "2017-01-01"}, {"end": "next year"}],
)
def test_impossible_ranges_are_refused(given: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TimeRange.model_validate(given)


def test_the_flow_parameter_schema_offers_a_date_picker() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.training import training

    schema = parameter_schema(training).model_dump()
    time_range = schema["definitions"]["TimeRange"]["properties"]
    formats = [option.get("format") for option in time_range["end"]["anyOf"]]
    assert formats[:2] == ["date-time", "date"]
    assert {"type": "number"} in time_range["end"]["anyOf"]


def test_train_start_and_end_set_the_period_for_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[TrainingOverrides] = []

    def run_training(config: str, mode: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        from modelcycle.cli._train import parse_overrides

        seen.append(parse_overrides(overrides))
        raise SystemExit(0)

    monkeypatch.setattr("modelcycle.cli._train.run_training", run_training)
    result = CliRunner().invoke(
        app, ["train", "configs/demo.yaml", "--start", "2017-10-01", "--end", "2017-10-31"]
    )
    assert result.exit_code == 0, result.output
    (overrides,) = seen
    assert overrides.time_range == TimeRange(start=date(2017, 10, 1), end=date(2017, 10, 31))


def test_train_refuses_a_bad_date_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcycle.cli._train import run_training

    monkeypatch.setattr("modelcycle.cli._train.check_configured_server", lambda: None)
    monkeypatch.setattr("modelcycle.cli._runtime.prepare_prefect_env", lambda: pytest.fail("ran"))
    with pytest.raises(Exception) as caught:
        run_training("configs/demo.yaml", "scratch", {"time_range": {"end": "31/10/2017"}})
    assert str(caught.value).startswith("--end: expected an ISO date")


def test_a_period_is_said_in_words() -> None:
    assert TimeRange(start=2002, end=2006).describe() == "2002 to 2006"
    assert TimeRange(end=2000).describe() == "up to 2000"
    assert TimeRange(start="2017-10-01").describe() == "from 2017-10-01"
