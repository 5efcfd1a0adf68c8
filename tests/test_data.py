"""Data preparation: load, validate, clean, split and profile, on a real sample of the demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict
from prefect.logging import disable_run_logger

from modelcycle import data
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.errors import DataError, DataValidationError
from tasks.data import clean_data, profile_data, split_data, validate_data


def _config(source: Path | str, **changes: Any) -> PipelineConfig:
    """The demo config on `source`; `changes` replace top-level sections (merged one level)."""
    raw = demo_config_dict()
    raw["data"] = {"source": str(source)}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_config(raw)


@pytest.fixture
def config(small_parquet: Path) -> PipelineConfig:
    return _config(small_parquet)


@pytest.fixture
def table(config: PipelineConfig, small_parquet: Path) -> pd.DataFrame:
    return data.load_table(config, small_parquet)


# --- load ----------------------------------------------------------------------------------


def test_load_keeps_the_used_columns_and_drops_pii(
    config: PipelineConfig, small_parquet: Path
) -> None:
    raw = pd.read_parquet(small_parquet)
    assert "respondent_id" in raw.columns  # the sample really holds PII
    table = data.load_table(config, small_parquet)
    assert "respondent_id" not in table.columns
    assert "realrinc" not in table.columns  # in the file but not used by the pipeline
    assert set(table.columns) == set(config.used_columns)
    assert len(table) == len(raw)
    profile = data.profile(table)
    assert "respondent_id" not in profile["columns"]
    assert "respondent_id" not in str(profile)


def test_time_range_keeps_only_rows_in_the_window(small_parquet: Path) -> None:
    config = _config(small_parquet, data={"time_range": {"start": 1980, "end": 1990}})
    table = data.load_table(config, small_parquet)
    raw = pd.read_parquet(small_parquet)
    expected = int(raw["year"].between(1980, 1990).sum())
    assert len(table) == expected
    assert table["year"].min() >= 1980
    assert table["year"].max() <= 1990
    assert {1980, 1990} <= set(table["year"])  # both ends included


def test_open_ended_time_range(small_parquet: Path) -> None:
    config = _config(small_parquet, data={"time_range": {"start": 1996}})
    table = data.load_table(config, small_parquet)
    raw = pd.read_parquet(small_parquet)
    assert len(table) == int((raw["year"] >= 1996).sum())


def test_time_range_that_keeps_nothing_names_the_range_and_how_to_change_it(
    small_parquet: Path,
) -> None:
    config = _config(small_parquet, data={"time_range": {"start": 2050}})
    with pytest.raises(DataError) as caught:
        data.load_table(config, small_parquet)
    message = str(caught.value)
    assert str(small_parquet) in message and "from 2050" in message
    assert "--start/--end" in message


def test_an_empty_table_is_a_violation(table: pd.DataFrame, config: PipelineConfig) -> None:
    violations = data.validation_violations(table.head(0), config)
    assert any("no rows" in v for v in violations)


def test_missing_empty_and_unreadable_files_are_named(
    tmp_path: Path, config: PipelineConfig
) -> None:
    missing = tmp_path / "missing.csv"
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"this is not parquet")
    for path in (missing, empty, garbage):
        with pytest.raises(DataError) as info:
            data.load_table(config, path)
        assert str(path) in str(info.value)


def test_csv_and_parquet_give_the_same_table(
    tmp_path: Path, config: PipelineConfig, small_parquet: Path, table: pd.DataFrame
) -> None:
    csv = tmp_path / "same.csv"
    pd.read_parquet(small_parquet).to_csv(csv, index=False)
    from_csv = data.load_table(config, csv)
    assert list(from_csv.columns) == list(table.columns)
    for column in config.features.numeric:
        np.testing.assert_allclose(from_csv[column], table[column])
    assert data.validation_violations(from_csv, config) == []


# --- validate ------------------------------------------------------------------------------


def test_the_sample_is_valid(table: pd.DataFrame, config: PipelineConfig) -> None:
    assert data.validation_violations(table, config) == []
    validate_data.fn(table, config, "sample")  # the task raises nothing either


def _three_problems(table: pd.DataFrame) -> pd.DataFrame:
    bad = table.copy()
    bad.loc[bad.index[:3], "age"] = 150.0  # out of range
    bad["wrkstat"] = bad["wrkstat"].astype(object)
    bad.loc[bad.index[:2], "wrkstat"] = "Astronaut"  # not an allowed category
    bad.loc[bad.index[: len(bad) // 2], "prestg10"] = np.nan  # 50% missing, 10% allowed
    return bad


def test_validation_reports_every_violation_at_once(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    violations = data.validation_violations(_three_problems(table), config)
    assert len(violations) == 3
    text = "\n".join(violations)
    for column in ("age", "wrkstat", "prestg10"):
        assert f"'{column}'" in text
    assert "150" in text
    assert "Astronaut" in text


def test_validate_task_raises_with_the_source_and_every_violation(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    with pytest.raises(DataValidationError) as info:
        validate_data.fn(_three_problems(table), config, "batch.parquet")
    error = info.value
    assert error.source == "batch.parquet"
    assert len(error.violations) == 3
    assert "batch.parquet" in str(error)
    assert all(f"'{c}'" in str(error) for c in ("age", "wrkstat", "prestg10"))


def test_invalid_share_within_the_allowance_is_accepted(small_parquet: Path) -> None:
    columns = demo_config_dict()["columns"]
    columns["age"] = {**columns["age"], "max_invalid_share": 0.01}
    config = _config(small_parquet, columns=columns)
    table = data.load_table(config, small_parquet)
    bad = table.copy()
    bad.loc[bad.index[: int(len(bad) * 0.005)], "age"] = 150.0
    assert data.validation_violations(bad, config) == []
    bad.loc[bad.index[: int(len(bad) * 0.02)], "age"] = 150.0
    assert any("'age'" in v for v in data.validation_violations(bad, config))


def test_text_in_a_numeric_column_is_a_type_violation(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    bad = table.assign(age=table["age"].astype(object))
    bad.loc[bad.index[0], "age"] = "abc"
    violations = data.validation_violations(bad, config)
    assert len(violations) == 1
    assert "'age'" in violations[0]
    assert "abc" in violations[0]


def test_missing_column_all_missing_column_and_single_class(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    bad = table.drop(columns=["educcat"]).assign(childs=np.nan, high_income=1)
    text = "\n".join(data.validation_violations(bad, config))
    assert "missing required column 'educcat'" in text
    assert "'childs'" in text
    assert "every value is missing" in text
    assert "'high_income'" in text
    assert "single class" in text


def test_binary_target_with_three_classes_is_refused(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    bad = table.copy()
    bad.loc[bad.index[0], "high_income"] = 2
    assert any("high_income" in v for v in data.validation_violations(bad, config))


# --- clean ---------------------------------------------------------------------------------


def _dirty(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """The sample with known problems in known rows (positions, which equal the labels here)."""
    dirty = table.copy()
    dirty["wrkstat"] = dirty["wrkstat"].astype(object)
    dirty["high_income"] = dirty["high_income"].astype("float64")
    rows = {
        "no_target": [0, 1, 2, 3, 4],
        "bad_age": [10, 11, 12],
        "bad_wrkstat": [20, 21],
        "duplicated": [30, 31, 32, 33],
    }
    dirty.loc[rows["no_target"], "high_income"] = np.nan
    dirty.loc[rows["bad_age"], "age"] = 150.0
    dirty.loc[rows["bad_wrkstat"], "wrkstat"] = "Astronaut"
    copies = dirty.loc[rows["duplicated"]]
    return pd.concat([dirty, copies], ignore_index=True), rows


def _expected_rows(frame: pd.DataFrame) -> int:
    """Rows left once missing targets and duplicate rows are gone, computed with pandas only."""
    kept = frame.loc[frame["high_income"].notna()]
    return len(kept.astype(str).drop_duplicates())


def test_clean_sets_invalid_values_missing(table: pd.DataFrame, small_parquet: Path) -> None:
    config = _config(small_parquet, cleaning={"drop_duplicates": True})
    dirty, rows = _dirty(table)
    before = dirty.copy()
    cleaned, report = data.clean(dirty, config)
    pd.testing.assert_frame_equal(dirty, before)  # input untouched

    expected_frame = dirty.copy()
    expected_frame.loc[rows["bad_age"], "age"] = np.nan
    expected_frame.loc[rows["bad_wrkstat"], "wrkstat"] = np.nan
    assert len(cleaned) == _expected_rows(expected_frame)
    assert report.rows_in == len(dirty)
    assert report.rows_out == len(cleaned)
    assert report.dropped_missing_target == len(rows["no_target"])
    assert report.dropped_invalid == 0
    with_target = int(expected_frame["high_income"].notna().sum())
    assert report.dropped_duplicates == with_target - len(cleaned)
    assert report.dropped_duplicates >= len(rows["duplicated"])
    assert report.values_set_missing == {"age": 3, "wrkstat": 2}
    dropped = report.dropped_missing_target + report.dropped_invalid + report.dropped_duplicates
    assert report.rows_in - dropped == report.rows_out
    assert cleaned["high_income"].notna().all()
    assert cleaned["age"].between(18, 89).where(cleaned["age"].notna(), True).all()
    assert "Astronaut" not in set(cleaned["wrkstat"].dropna())
    assert not cleaned.duplicated().any()
    assert cleaned["age"].dtype == np.float64


def test_clean_drop_row_policy_removes_rows_with_invalid_values(
    table: pd.DataFrame, small_parquet: Path
) -> None:
    config = _config(
        small_parquet, cleaning={"invalid_values": "drop_row", "drop_duplicates": True}
    )
    dirty, rows = _dirty(table)
    cleaned, report = data.clean(dirty, config)

    bad = rows["bad_age"] + rows["bad_wrkstat"]
    assert len(cleaned) == _expected_rows(dirty.drop(index=bad))
    assert report.dropped_invalid == len(bad)
    assert report.values_set_missing == {}
    dropped = report.dropped_missing_target + report.dropped_invalid + report.dropped_duplicates
    assert report.rows_in - dropped == report.rows_out
    assert report.dropped_missing_target == len(rows["no_target"])
    assert 150.0 not in set(cleaned["age"])
    assert "Astronaut" not in set(cleaned["wrkstat"].dropna())


def test_clean_keeps_duplicates_when_told(table: pd.DataFrame, small_parquet: Path) -> None:
    config = _config(small_parquet, cleaning={"drop_duplicates": False})
    doubled = pd.concat([table, table.head(10)], ignore_index=True)
    cleaned, report = data.clean(doubled, config)
    assert len(cleaned) == len(doubled)
    assert report.dropped_duplicates == 0


def test_missing_target_error_policy(table: pd.DataFrame, small_parquet: Path) -> None:
    config = _config(small_parquet, cleaning={"missing_target": "error"})
    dirty = table.assign(high_income=table["high_income"].astype("float64"))
    dirty.loc[dirty.index[:2], "high_income"] = np.nan
    with pytest.raises(DataError, match="high_income"):
        data.clean(dirty, config)


def test_clean_task_returns_the_same_as_the_function(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    dirty, _ = _dirty(table)
    with disable_run_logger():
        cleaned, report = clean_data.fn(dirty, config)
    direct, direct_report = data.clean(dirty, config)
    pd.testing.assert_frame_equal(cleaned, direct)
    assert report == direct_report


# --- split ---------------------------------------------------------------------------------


def test_time_split_keeps_whole_periods_and_tests_on_the_latest(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    cleaned, _ = data.clean(table, config)
    before = cleaned.copy()
    train, test = data.split(cleaned, config)
    pd.testing.assert_frame_equal(cleaned, before)

    assert len(train) + len(test) == len(cleaned)
    train_years, test_years = set(train["year"]), set(test["year"])
    assert not train_years & test_years
    assert min(test_years) > max(train_years)
    share = config.split.test_share
    assert len(test) / len(cleaned) >= share
    # The smallest set of latest years: without its earliest year the test set is too small.
    earliest = min(test_years)
    assert (test["year"] != earliest).sum() / len(cleaned) < share


def test_time_split_with_a_single_period_is_refused(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    one_year = table.assign(year=1990)
    with pytest.raises(DataError, match="year"):
        data.split(one_year, config)


@pytest.fixture
def stratified(small_parquet: Path) -> PipelineConfig:
    return _config(small_parquet, split={"strategy": "stratified", "test_share": 0.25, "seed": 3})


def test_stratified_split_preserves_class_shares(
    table: pd.DataFrame, stratified: PipelineConfig
) -> None:
    cleaned, _ = data.clean(table, stratified)
    before = cleaned.copy()
    train, test = data.split(cleaned, stratified)
    pd.testing.assert_frame_equal(cleaned, before)

    overall = cleaned["high_income"].mean()
    assert abs(train["high_income"].mean() - overall) < 0.005
    assert abs(test["high_income"].mean() - overall) < 0.005
    assert len(test) == pytest.approx(0.25 * len(cleaned), abs=1)
    assert len(train) + len(test) == len(cleaned)


def test_stratified_split_is_reproducible_for_a_seed(
    table: pd.DataFrame, stratified: PipelineConfig, small_parquet: Path
) -> None:
    cleaned, _ = data.clean(table, stratified)
    first = data.split(cleaned, stratified)
    with disable_run_logger():
        second = split_data.fn(cleaned, stratified)
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a, b)
    other_seed = _config(
        small_parquet, split={"strategy": "stratified", "test_share": 0.25, "seed": 4}
    )
    _, other_test = data.split(cleaned, other_seed)
    assert not other_test.equals(first[1])


def test_stratified_split_with_a_lone_class_member_is_a_data_error(
    table: pd.DataFrame, stratified: PipelineConfig
) -> None:
    tiny = table.head(20).assign(high_income=[0] * 19 + [1])
    with pytest.raises(DataError, match="stratified"):
        data.split(tiny, stratified)


# --- profile -------------------------------------------------------------------------------


def test_profile_matches_pandas(table: pd.DataFrame, config: PipelineConfig) -> None:
    cleaned, _ = data.clean(table, config)
    profile = data.profile(cleaned)
    assert profile["rows"] == len(cleaned)
    assert set(profile["columns"]) == set(cleaned.columns)
    for column in config.features.numeric:
        values = cleaned[column].to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        entry = profile["columns"][column]
        assert entry["count"] == present.size
        assert entry["missing"] == values.size - present.size
        assert entry["missing_share"] == pytest.approx(np.isnan(values).mean())
        assert entry["mean"] == pytest.approx(present.mean())
        assert entry["std"] == pytest.approx(present.std(ddof=1))
        assert entry["min"] == present.min()
        assert entry["max"] == present.max()
        for key, q in (("p05", 5), ("p25", 25), ("median", 50), ("p75", 75), ("p95", 95)):
            assert entry[key] == pytest.approx(np.percentile(present, q))
    for column in config.features.categorical:
        entry = profile["columns"][column]
        counts: dict[str, int] = {}
        for value in cleaned[column].dropna():
            counts[str(value)] = counts.get(str(value), 0) + 1
        assert entry["distinct"] == len(counts)
        for name, count in entry["top"].items():
            assert counts[name] == count
        assert max(entry["top"].values()) == max(counts.values())


def test_profile_task_profiles_both_frames(table: pd.DataFrame, config: PipelineConfig) -> None:
    cleaned, _ = data.clean(table, config)
    train, test = data.split(cleaned, config)
    profiles = profile_data.fn(train, test)
    assert profiles["train"]["rows"] == len(train)
    assert profiles["holdout"]["rows"] == len(test)
    assert profiles["holdout"]["columns"]["year"]["min"] == test["year"].min()


def test_profile_of_an_all_missing_column(table: pd.DataFrame) -> None:
    profile = data.profile(table.assign(age=np.nan))
    entry = profile["columns"]["age"]
    assert entry["count"] == 0
    assert entry["missing_share"] == 1.0
    assert "mean" not in entry


def test_features_and_target_follow_the_config(table: pd.DataFrame, config: PipelineConfig) -> None:
    X, y = data.features_and_target(table, config)
    assert list(X.columns) == config.features.all
    assert y.name == config.target
    assert "year" not in X.columns
    assert "gender" not in X.columns


# --- known bugs ----------------------------------------------------------------------------


def test_numeric_category_codes_with_a_blank_match_their_allowed_values(
    tmp_path: Path, small_parquet: Path
) -> None:
    raw_columns = demo_config_dict()["columns"]
    raw_columns["region"] = {
        "type": "categorical",
        "allowed": ["1", "2", "3"],
        "max_missing_share": 0.5,
    }
    features = demo_config_dict()["features"]
    features["categorical"].append("region")
    csv = tmp_path / "codes.csv"
    config = _config(csv, columns=raw_columns, features=features)
    table = pd.read_parquet(small_parquet)
    table["region"] = np.resize(np.array([1, 2, 3, None], dtype=object), len(table))
    table.to_csv(csv, index=False)
    loaded = data.load_table(config, csv)
    assert data.validation_violations(loaded, config) == []


def test_a_small_invalid_share_is_not_shown_as_zero(
    table: pd.DataFrame, config: PipelineConfig
) -> None:
    bad = table.assign(age=table["age"].astype(object))
    bad.loc[bad.index[0], "age"] = "abc"
    (message,) = data.validation_violations(bad, config)
    assert "0.0% of values are invalid" not in message
