"""Cleaning that never surprises, on generated tables: people who share a coded profile are not
duplicates, a repeated row of the file is, and dropping many fails validation with the count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelcycle import data
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.errors import DataError
from modelcycle.reports import cleaning_lines

ROWS = 2000


def _profiles(rows: int = ROWS) -> pd.DataFrame:
    """Coded survey answers: 2 x 3 x 4 x 2 = 48 profiles for 2,000 different people."""
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "person_id": np.arange(rows),  # PII: dropped on load, but part of the file's rows
            "sex": rng.choice(["F", "M"], rows),
            "region": rng.choice([1, 2, 3], rows),
            "education": rng.choice([1, 2, 3, 4], rows),
            "employed": rng.choice([0, 1], rows),
            "year": rng.choice([2016, 2017], rows),
        }
    ).assign(outcome=lambda t: (t["education"] >= 3).astype(int))


def _config(source: Path, **cleaning: Any) -> PipelineConfig:
    return parse_config(
        {
            "name": "profiles",
            "owner": "t",
            "description": "d",
            "intended_use": "u",
            "task": "binary_classification",
            "data": {"source": str(source)},
            "target": "outcome",
            "features": {"numeric": ["employed"], "categorical": ["region", "education"]},
            "sensitive_columns": ["sex"],
            "pii_columns": ["person_id"],
            "time_column": "year",
            "cleaning": cleaning,
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"primary_metric": "roc_auc"},
        }
    )


def _prepared(config: PipelineConfig, path: Path) -> tuple[pd.DataFrame, data.CleaningReport]:
    loaded = data.load_source(config, path)
    data.validate(loaded.table, config, str(path), loaded.duplicated)
    return data.clean(loaded.table, config, loaded.duplicated)


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.csv"
    _profiles().to_csv(path, index=False)
    return path


def test_many_people_with_equal_coded_profiles_keep_every_row(profiles: Path) -> None:
    used = _profiles().drop(columns="person_id")
    assert used.duplicated().sum() > ROWS / 2  # most rows share their used values with another
    for config in (_config(profiles), _config(profiles, drop_duplicates=True)):
        cleaned, report = _prepared(config, profiles)
        assert len(cleaned) == ROWS
        assert report.dropped_duplicates == 0


def test_the_default_keeps_even_rows_repeated_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "repeated.csv"
    table = _profiles()
    pd.concat([table, table.head(5)]).to_csv(path, index=False)
    cleaned, report = _prepared(_config(path), path)
    assert len(cleaned) == ROWS + 5
    assert report.duplicates_on is None
    assert "duplicates kept" in "\n".join(cleaning_lines(report.to_dict()))


def test_rows_repeated_on_every_column_of_the_file_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "repeated.csv"
    table = _profiles()
    pd.concat([table, table.iloc[[3, 7, 11]]]).to_csv(path, index=False)  # 3 of 2,003: 0.15 %
    cleaned, report = _prepared(_config(path, drop_duplicates=True), path)
    assert len(cleaned) == ROWS
    assert report.dropped_duplicates == 3
    assert report.rows_in - report.rows_out == 3
    lines = "\n".join(cleaning_lines(report.to_dict()))
    assert "3 duplicate rows dropped (on every column of the file)" in lines


def test_too_many_duplicates_fail_validation_with_the_count(tmp_path: Path) -> None:
    path = tmp_path / "doubled.csv"
    table = _profiles()
    pd.concat([table, table.head(100)]).to_csv(path, index=False)  # 100 of 2,100: 4.76 %
    config = _config(path, drop_duplicates=True)
    loaded = data.load_source(config, path)
    violations = data.validation_violations(loaded.table, config, loaded.duplicated)
    (line,) = violations
    assert "100 of 2100 rows (4.76%)" in line and "max_duplicate_share 1.00%" in line
    with pytest.raises(DataError):
        data.validate(loaded.table, config, str(path), loaded.duplicated)
    # Said to be expected: accepted, and dropped.
    expected = _config(path, drop_duplicates=True, max_duplicate_share=0.05)
    cleaned, report = _prepared(expected, path)
    assert (len(cleaned), report.dropped_duplicates) == (ROWS, 100)


def test_a_declared_key_decides_what_is_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "resubmitted.csv"
    table = _profiles()
    again = table.head(4).assign(employed=1 - table.head(4)["employed"])  # a corrected answer
    pd.concat([table, again]).to_csv(path, index=False)
    by_row = _config(path, drop_duplicates=True)
    assert _prepared(by_row, path)[1].dropped_duplicates == 0  # not equal on every column
    by_key = _config(path, drop_duplicates=True, duplicate_key=["person_id"])
    cleaned, report = _prepared(by_key, path)
    assert (len(cleaned), report.dropped_duplicates, report.duplicates_on) == (
        ROWS,
        4,
        ["person_id"],
    )


def test_a_key_column_missing_from_the_file_is_named(profiles: Path) -> None:
    config = _config(profiles, drop_duplicates=True, duplicate_key=["customer"])
    with pytest.raises(DataError, match=r"duplicate_key.*\['customer'\]"):
        data.load_source(config, profiles)


def test_duplicates_are_counted_within_the_period(tmp_path: Path) -> None:
    path = tmp_path / "periods.csv"
    table = _profiles()
    repeats = table.loc[table["year"] == 2016].head(2)
    pd.concat([table, repeats]).to_csv(path, index=False)
    raw = _config(path, drop_duplicates=True).model_dump(mode="json")
    raw["data"]["time_range"] = {"start": 2017}
    config = parse_config(raw)
    _, report = _prepared(config, path)
    assert report.dropped_duplicates == 0
    assert report.rows_in == int((table["year"] == 2017).sum())


def test_numeric_categories_compare_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "floats.csv"
    table = _profiles().assign(region=lambda t: t["region"].astype(float))
    table.loc[::50, "region"] = np.nan  # blanks keep the column float
    table.to_csv(path, index=False)
    raw = _config(path).model_dump(mode="json")
    raw["columns"] = {
        "region": {"type": "categorical", "allowed": ["1.0", "2.0", 3], "max_missing_share": 0.1}
    }
    config = parse_config(raw)
    assert data.validation_violations(data.load_table(config, path), config) == []
    raw["columns"]["region"]["allowed"] = [1.0, 2.0]
    config = parse_config(raw)
    (line,) = data.validation_violations(data.load_table(config, path), config)
    assert "'region'" in line and "e.g. 3.0" in line


def test_a_text_category_is_typed_the_same_judged_per_value_or_per_row(tmp_path: Path) -> None:
    """Object columns of text are judged once per distinct value (monitoring a million logged
    rows); the same values as pandas' string dtype take the row-by-row path: both agree, and
    a value outside `allowed` or missing becomes NaN."""
    config = _config(tmp_path / "unused.csv")
    raw = config.model_dump(mode="json")
    raw["columns"] = {"region": {"type": "categorical", "allowed": ["north", "south"]}}
    config = parse_config(raw)
    rows = ["north", "south", "east", None, np.nan, "south", "north"] * 3
    as_objects = pd.Series(rows, dtype=object, name="region")
    judged = data.typed_valid(as_objects, config, "region")
    row_by_row = data.typed_valid(as_objects.astype("string"), config, "region")
    assert judged.dtype == object and row_by_row.dtype == object
    assert judged.isna().tolist() == row_by_row.isna().tolist()
    assert judged.dropna().tolist() == row_by_row.dropna().tolist()
    assert judged.isna().tolist()[:7] == [False, False, True, True, True, False, False]
    # A column mixing text and numbers keeps the row-by-row path (1 and True are not one value).
    mixed = data.typed_valid(pd.Series(["north", 1, True], dtype=object), config, "region")
    assert mixed.isna().tolist() == [False, True, True]


def test_group_labels_name_text_groups_once_and_missing_as_its_own_group() -> None:
    rows = pd.Series(["Male", "Female", None, np.nan, "Female"] * 4, dtype=object)
    labels = data.group_labels(rows)
    assert labels.tolist() == data.group_labels(rows.astype("string")).tolist()
    assert labels.tolist()[:5] == [
        "Male",
        "Female",
        data.MISSING_GROUP,
        data.MISSING_GROUP,
        "Female",
    ]
    mixed = pd.Series(["a", 1, 1.5, None], dtype=object)  # not all text: named row by row
    assert data.group_labels(mixed).tolist() == ["a", "1", "1.5", data.MISSING_GROUP]
