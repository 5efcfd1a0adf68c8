"""Library-level guards against input that must never be trusted: estimator import paths
outside the allow-list, infinite numbers, duplicated column names, too many categories.

The command line's view of the same mistakes is in tests/test_bad_input_table.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict
from sklearn.preprocessing import OneHotEncoder

from modelcycle import data, training
from modelcycle.config import DEFAULT_CATEGORY_LIMIT, PipelineConfig, parse_config
from modelcycle.errors import ConfigError, DataError, EstimatorError
from modelcycle.settings import ESTIMATOR_PACKAGES_ENV, get_settings
from modelcycle.training import resolve_estimator

# --- estimator allow-list ------------------------------------------------------------------


def test_an_estimator_outside_the_allow_list_is_refused_before_anything_is_imported() -> None:
    """`this` prints the Zen of Python when imported; a fresh interpreter shows whether the
    refusal came before the import (the test process may have imported anything already)."""
    code = (
        "import sys\n"
        "from modelcycle.training import resolve_estimator\n"
        "from modelcycle.errors import EstimatorError\n"
        "try:\n"
        "    resolve_estimator('this.Anything')\n"
        "except EstimatorError as exc:\n"
        "    print('refused:', exc)\n"
        "print('imported this:', 'this' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "The Zen of Python" not in result.stdout
    assert "imported this: False" in result.stdout
    assert "refused: model.estimator: 'this.Anything' is outside the packages allowed" in (
        result.stdout
    )


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "subprocess.Popen",
        "sklearnx.Model",  # a prefix of an allowed name is not that package
        "sklearn.ensemble.Random Forest",
        "sklearn..ensemble.X",
        "sklearn.ensemble.X;import os",
    ],
)
def test_names_outside_the_allow_list_or_not_import_paths_are_refused(name: str) -> None:
    with pytest.raises(EstimatorError, match=r"^model\.estimator: "):
        resolve_estimator(name)


def test_the_allow_list_is_scikit_learn_by_default_and_extended_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ESTIMATOR_PACKAGES_ENV, raising=False)
    assert get_settings().estimator_packages == ("sklearn",)
    with pytest.raises(EstimatorError, match="outside the packages allowed"):
        resolve_estimator("sklearn_extra_pkg.Model")
    monkeypatch.setenv(ESTIMATOR_PACKAGES_ENV, " xgboost , my_team.models ,")
    assert get_settings().estimator_packages == ("sklearn", "xgboost", "my_team.models")
    # Allowed now, so it is imported, and the import itself fails with its own message.
    with pytest.raises(EstimatorError, match=r"cannot import 'my_team\.models\.Booster'"):
        resolve_estimator("my_team.models.Booster")


def test_a_malformed_allow_list_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ESTIMATOR_PACKAGES_ENV, "xgboost,not a package")
    with pytest.raises(ConfigError, match=ESTIMATOR_PACKAGES_ENV):
        get_settings()


def test_an_explicit_allow_list_replaces_the_settings() -> None:
    """The public function issue 11's `config validate` calls with its own list."""
    from sklearn.linear_model import LogisticRegression

    assert (
        resolve_estimator("sklearn.linear_model.LogisticRegression", ("sklearn",))
        is LogisticRegression
    )
    with pytest.raises(EstimatorError, match="outside the packages allowed"):
        resolve_estimator("sklearn.linear_model.LogisticRegression", ("xgboost",))


def test_a_class_re_exported_from_outside_the_allow_list_is_refused() -> None:
    """An allowed module can import a foreign class; what counts is where it is defined."""
    with pytest.raises(EstimatorError, match=r"defined in 'sklearn\.base'"):
        resolve_estimator("sklearn.linear_model._base.BaseEstimator", ("sklearn.linear_model",))


# --- data: infinite values, repeated column names, too many categories ----------------------


def _config(small_parquet: Path, **features: Any) -> PipelineConfig:
    raw = demo_config_dict()
    raw["data"] = {"source": str(small_parquet), "time_range": {"end": 2000}}
    raw["model"].pop("search")
    raw["features"].update(features)
    return parse_config(raw)


def test_infinite_values_are_violations_in_training_and_missing_for_the_model(
    small_parquet: Path,
) -> None:
    config = _config(small_parquet)
    table = pd.read_parquet(small_parquet).head(100)
    table = table.assign(age=table["age"].where(table.index % 10 != 0, -np.inf))
    violations = [v for v in data.validation_violations(table, config) if "'age'" in v]
    assert violations == [
        "column 'age': 10 of 100 values are infinite (-inf); expected finite numbers "
        "(leave a value empty if it is missing)"
    ]
    typed = data.typed_valid(table["age"], config, "age")
    assert typed.isna().sum() == 10 and np.isfinite(typed.dropna()).all()


def test_a_column_read_as_numbers_without_a_schema_is_checked_for_infinity(
    small_parquet: Path,
) -> None:
    config = _config(small_parquet)
    values = pd.Series([1.0, np.inf, 3.0])
    assert data.column_violations("score", values, config) == [
        "column 'score': 1 of 3 values are infinite (inf); expected finite numbers "
        "(leave a value empty if it is missing)"
    ]
    text = pd.Series(["inf", "a"])  # a category spelled 'inf' is just a category
    assert data.column_violations("occrecode", text, config) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_repeated_column_name_is_refused_naming_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"twice{suffix}"
    if suffix == ".csv":
        path.write_text("age,childs,age\n30,1,31\n", encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = [pa.array([30]), pa.array([1]), pa.array([31])]
        pq.write_table(pa.table(arrays, names=["age", "childs", "age"]), path)
    with pytest.raises(DataError) as info:
        data.read_file(path)
    assert str(info.value) == (
        f"{path}: column name(s) ['age'] appear more than once in the header; expected each "
        "column once (pandas would silently rename the copies)"
    )


def _many_categories(small_parquet: Path, distinct: int) -> pd.DataFrame:
    table = pd.read_parquet(small_parquet).head(2000).reset_index(drop=True)
    rng = np.random.default_rng(0)
    # Zipf-like: a few frequent categories and a long tail, as an id-like column has.
    codes = np.minimum(rng.zipf(1.3, len(table)), distinct)
    return table.assign(occrecode=[f"c{c}" for c in codes])


@pytest.mark.parametrize(
    "caps", [{}, {"max_categories": 12}, {"min_frequency": 20}, {"min_frequency": 0.02}]
)
def test_encoded_columns_match_what_the_fitted_encoder_makes(
    small_parquet: Path, caps: dict[str, Any]
) -> None:
    """The limit is judged on the count scikit-learn's encoder really produces."""
    config = _config(small_parquet, category_limit=10_000, **caps)
    table, _ = data.clean(_many_categories(small_parquet, 500), config)
    pipeline = training.build_pipeline(config)
    features, _ = data.features_and_target(table, config)
    pipeline.named_steps["preprocess"].fit(features)
    encoder = (
        pipeline.named_steps["preprocess"].named_transformers_["categorical"].named_steps["encode"]
    )
    made = sum(
        1
        for name in encoder.get_feature_names_out(config.features.categorical)
        if name.startswith("occrecode_")
    )
    assert data.encoded_columns(table["occrecode"], config) == made
    if caps:
        assert made < table["occrecode"].nunique()


def test_too_many_categories_are_refused_unless_capped(small_parquet: Path) -> None:
    table = _many_categories(small_parquet, 500)
    distinct = table["occrecode"].nunique()
    assert distinct > 50
    refused = data.validation_violations(table, _config(small_parquet, category_limit=50))
    assert refused == [
        f"column 'occrecode': {distinct} distinct categories would become {distinct} one-hot "
        "columns, more than features.category_limit 50; group the rare ones with "
        "features.max_categories or features.min_frequency, raise the limit, or drop the "
        "column if it is an identifier"
    ]
    capped = _config(small_parquet, category_limit=50, max_categories=40)
    assert data.validation_violations(table, capped) == []


def test_without_caps_the_encoder_is_the_one_every_existing_model_was_fitted_with(
    small_parquet: Path,
) -> None:
    """So the same config and data still give the same model file."""
    pipeline = training.build_pipeline(_config(small_parquet))
    encoder = pipeline.named_steps["preprocess"].transformers[1][1].named_steps["encode"]
    assert (
        encoder.get_params()
        == OneHotEncoder(handle_unknown="ignore", sparse_output=False).get_params()
    )


def test_category_limit_has_a_default_and_caps_are_checked(small_parquet: Path) -> None:
    assert _config(small_parquet).features.category_limit == DEFAULT_CATEGORY_LIMIT
    for bad in ({"category_limit": 0}, {"max_categories": 1}, {"min_frequency": 2.5}):
        with pytest.raises(ConfigError, match="features"):
            _config(small_parquet, **bad)
