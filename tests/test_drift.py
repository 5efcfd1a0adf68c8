"""The drift engine: same tests, scores and verdicts as Evidently, and its own guarantees."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.drift_data import (
    CAT_HEAVY_COLUMNS,
    CAT_HEAVY_SHIFTS,
    COLUMNS,
    SCENARIOS,
    make_categorical_frames,
    make_frames,
)
from modelcycle.monitoring import (
    ColumnKind,
    ColumnRule,
    Method,
    column_drift,
    dataset_drift,
    default_method,
    evidently_drift,
)


def _agree(reference, current, rules=None, columns=COLUMNS):
    ours = dataset_drift(reference, current, columns, rules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = evidently_drift(reference, current, columns, rules)
    assert set(theirs) == set(columns)
    for column in ours.columns:
        other = theirs[column.column]
        where = f"{column.column}: ours {column.method} {column.score}, Evidently {other}"
        assert column.method is other.method, where
        assert column.threshold == other.threshold, where
        assert column.score == pytest.approx(other.score, rel=1e-10, abs=1e-12), where
        assert column.drifted is other.drifted, where
    return ours


# 1000 reference rows: statistical tests; 1001: distances. Unequal sides on purpose.
@pytest.mark.parametrize("rows", [(1000, 700), (1001, 700)], ids=["tests-1000", "distances-1001"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scores_and_verdicts_agree_with_evidently(rows, scenario):
    reference, current = make_frames(*rows, scenario, seed=3)
    ours = _agree(reference, current)
    tests = {Method.ks, Method.chisquare, Method.z}
    for column in ours.columns:
        # Rows after dropping missing values decide: num_04/num_09 fall under 1001.
        expected = (
            tests if column.reference_rows <= 1000 else {Method.wasserstein, Method.jensenshannon}
        )
        assert column.method in expected, column
    assert {c.method for c in ours.columns} >= (
        tests if rows[0] <= 1000 else {Method.wasserstein, Method.jensenshannon, Method.ks}
    )
    if scenario == "clear_shift":
        assert {"num_00", "num_03", "num_07", "num_12", "cat_1", "cat_3"} <= set(
            ours.drifted_columns
        )


# Two cases, Evidently costs seconds each: its tests (chi-square, Z) on a clear shift, and
# its distances on the borderline scenario, where a verdict could flip.
@pytest.mark.parametrize(
    ("rows", "scenario"),
    [((1000, 700), "clear_shift"), ((5000, 4000), "borderline")],
    ids=["tests-1000-clear-shift", "distances-5000-borderline"],
)
def test_a_categorical_heavy_table_agrees_with_evidently(rows, scenario):
    """13 text columns (shared string objects, missing values) and 3 numbers: the counting
    paths for text give Evidently's scores and verdicts."""
    reference, current = make_categorical_frames(*rows, scenario, seed=11)
    ours = _agree(reference, current, columns=CAT_HEAVY_COLUMNS)
    if scenario == "clear_shift":
        assert set(CAT_HEAVY_SHIFTS["clear_shift"]) <= set(ours.drifted_columns)
    # The same table as pandas categoricals (Parquet dictionaries read as such) agrees too.
    text = [c for c, kind in CAT_HEAVY_COLUMNS.items() if kind is ColumnKind.categorical]
    as_category = {c: "category" for c in text}
    again = dataset_drift(
        reference.astype(as_category), current.astype(as_category), CAT_HEAVY_COLUMNS
    )
    for first, second in zip(ours.columns, again.columns, strict=True):
        assert (first.method, first.drifted) == (second.method, second.drifted), first.column
        assert first.score == pytest.approx(second.score, rel=1e-12, abs=1e-15), first.column


def _pandas_counts(values: pd.Series) -> dict:
    counts = values.value_counts(dropna=True, sort=False)
    return {key: int(n) for key, n in counts.items() if n > 0}


@pytest.mark.parametrize(
    "values",
    [
        # equal strings held by different objects count as one value, as in pandas
        ["".join(["re", "gion"]) for _ in range(5)] + ["region", "other", None, np.nan],
        [1, 1.0, True, "1", None, pd.NA, float("nan"), "x", "x"],
        [],
        [None, None],
        [f"v{i}" for i in range(5000)] + ["v1"] * 3,  # past the distinct-objects limit
    ],
    ids=["equal-strings", "mixed-types", "empty", "all-missing", "many-distinct"],
)
def test_text_counts_are_pandas_value_counts(values):
    from modelcycle.monitoring._drift import _count_side

    column = pd.Series(values, dtype=object)
    assert dict(_count_side(column).counts.items()) == _pandas_counts(column)
    as_category = column.astype("category")
    assert dict(_count_side(as_category).counts.items()) == _pandas_counts(as_category)


def test_per_column_overrides_agree_with_evidently():
    reference, current = make_frames(3000, 2000, "borderline", seed=4)
    rules = {
        "num_00": ColumnRule(Method.jensenshannon),  # Sturges bins on a continuous column
        "num_01": ColumnRule(Method.ks, 0.01),
        "num_03": ColumnRule(threshold=0.2),
        "cat_0": ColumnRule(Method.chisquare, 0.01),
        "cat_1": ColumnRule(Method.z),
    }
    ours = _agree(reference, current, rules)
    by_column = ours.by_column()
    assert by_column["num_01"].method is Method.ks and by_column["num_01"].threshold == 0.01
    assert by_column["num_03"].threshold == 0.2


def test_wasserstein_matches_scipy_for_unequal_sizes_and_ties():
    rng = np.random.default_rng(0)
    reference = pd.Series(np.round(rng.normal(size=1503), 1))
    current = pd.Series(np.round(rng.normal(0.2, size=2210), 1))
    result = column_drift("x", reference, current, ColumnKind.numeric)
    expected = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert result.method is Method.wasserstein
    assert result.score == pytest.approx(expected, rel=1e-12)


def test_default_choice_follows_evidentlys_table():
    assert default_method(ColumnKind.numeric, 1000, 6) is Method.ks
    assert default_method(ColumnKind.numeric, 1000, 5) is Method.chisquare
    assert default_method(ColumnKind.numeric, 1000, 2) is Method.z
    assert default_method(ColumnKind.categorical, 1000, 3) is Method.chisquare
    assert default_method(ColumnKind.categorical, 1000, 2) is Method.z
    assert default_method(ColumnKind.numeric, 1001, 6) is Method.wasserstein
    assert default_method(ColumnKind.numeric, 1001, 5) is Method.jensenshannon
    assert default_method(ColumnKind.categorical, 1001, 2) is Method.jensenshannon


def test_missing_and_infinite_values_are_dropped_before_counting_rows():
    reference = pd.Series([1.0, 2.0, np.nan, np.inf, -np.inf] * 300)  # 600 finite rows
    current = pd.Series([1.0, 2.0, 3.0] * 200)
    result = column_drift("x", reference, current, ColumnKind.numeric)
    assert result.reference_rows == 600 and result.current_rows == 600
    assert result.distinct_values == 3
    assert result.method is Method.chisquare


def test_all_missing_column_gets_no_verdict_and_says_why():
    reference = pd.Series(np.arange(2000, dtype=float))
    current = pd.Series([np.nan] * 500)
    result = column_drift("age", reference, current, ColumnKind.numeric)
    assert result.drifted is None and result.score is None
    assert "no finite values in the current window" in result.note
    summary = dataset_drift(
        pd.DataFrame({"age": reference}),
        pd.DataFrame({"age": current}),
        {"age": ColumnKind.numeric},
    )
    assert summary.untested == ["age"] and not summary.dataset_drift


def test_two_sample_chisquare_holds_its_false_alarm_rate_where_evidentlys_does_not():
    """No drift, 8 equally likely categories, 300 rows a side: a 5% test should flag ~5%."""
    rng = np.random.default_rng(11)
    categories = np.array([f"c{i}" for i in range(8)], dtype=object)
    trials = 300
    flagged = {Method.chisquare: 0, Method.chi2_contingency: 0}
    for _ in range(trials):
        reference = pd.Series(rng.choice(categories, 300))
        current = pd.Series(rng.choice(categories, 300))
        for method in flagged:
            result = column_drift(
                "c", reference, current, ColumnKind.categorical, ColumnRule(method)
            )
            flagged[method] += bool(result.drifted)
    assert flagged[Method.chi2_contingency] / trials < 0.10
    assert flagged[Method.chisquare] / trials > 0.25  # Evidently's one-sample test over-flags


def test_two_sample_option_replaces_only_the_default_chisquare():
    reference, current = make_frames(600, 500, "no_drift", seed=5)
    result = dataset_drift(
        reference,
        current,
        COLUMNS,
        {"cat_0": ColumnRule(Method.chisquare)},
        two_sample_chisquare=True,
    ).by_column()
    assert result["cat_0"].method is Method.chisquare  # explicit rule kept
    assert result["cat_1"].method is Method.chi2_contingency
    assert result["num_00"].method is Method.ks


def test_numeric_only_method_on_a_categorical_column_is_refused():
    with pytest.raises(ValueError, match="needs a numeric column"):
        column_drift(
            "c",
            pd.Series(["a", "b"]),
            pd.Series(["a"]),
            ColumnKind.categorical,
            ColumnRule(Method.wasserstein),
        )
