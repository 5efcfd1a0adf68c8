"""Library-level guards against input that must never be trusted: estimator import paths
outside the allow-list, infinite numbers, duplicated column names, too many categories.

The command line's view of the same mistakes is in tests/test_bad_input_table.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelcycle.errors import ConfigError, EstimatorError
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
