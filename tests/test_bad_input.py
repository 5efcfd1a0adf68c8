"""Bad input through `modelcycle train` on a state folder with no champion yet: a non-zero
exit, a message naming the culprit, and nothing registered or published.

Most kinds of mistake are in the table of tests/test_bad_input_table.py, which runs them
against a registry that holds a champion and compares every stored file before and after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import Result
from conftest import demo_config_dict, write_config
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from modelcycle.artifacts import ArtifactStore
from modelcycle.registry import Registry
from modelcycle.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL = "gss-income"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """OpenMP spin-waits badly on a busy 2-core runner; the sample models are tiny anyway."""
    with threadpool_limits(limits=1):
        yield


def _train(config: Path | str, *args: str) -> Result:
    from modelcycle.cli import app

    return CliRunner().invoke(app, ["train", str(config), *args])


def _output(result: Result) -> str:
    """Everything printed, whether or not this click version mixes stderr into `output`."""
    try:
        stderr = result.stderr
    except ValueError:  # stderr was mixed into output
        stderr = ""
    return result.output if stderr in result.output else result.output + stderr


def _squeezed(text: str) -> str:
    """Without whitespace: rich wraps long lines and folds long paths when not on a terminal."""
    return "".join(text.split())


def _cli_error(result: Result) -> str:
    """The CLI's own message, not Prefect's log lines (which also quote the exception)."""
    output = _output(result)
    assert result.exit_code != 0, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "error: " in output, output
    return output[output.rindex("error: ") :]


def _assert_refused(result: Result, state: Settings, *mentions: str) -> str:
    """Non-zero exit, each mention in the message, and no version and no run folder anywhere."""
    message = _cli_error(result)
    for text in mentions:
        assert _squeezed(text) in _squeezed(message), f"{text!r} not in:\n{message}"
    registry = Registry(state.registry_url)
    try:
        assert [m.name for m in registry.list_models() if registry.list_versions(m.name)] == []
    finally:
        registry.close()
    assert ArtifactStore(state.artifact_store).list_runs(MODEL) == []
    return message


def _config_with(
    tmp_path: Path, source: Path | str, change: Callable[[dict], Any] | None = None
) -> Path:
    """The small demo pipeline (no search) on `source`, with one change applied."""
    raw = demo_config_dict()
    raw["data"] = {"source": str(source), "time_range": {"end": 2000}}
    raw["model"].pop("search")
    raw["model"]["params"]["max_iter"] = 50
    if change is not None:
        change(raw)
    return write_config(tmp_path, raw)


def _bad_csv(
    tmp_path: Path, small_parquet: Path, change: Callable[[pd.DataFrame], pd.DataFrame]
) -> Path:
    table = change(pd.read_parquet(small_parquet))
    path = tmp_path / "batch.csv"
    table.to_csv(path, index=False)
    return path


# --- data ----------------------------------------------------------------------------------


def test_values_out_of_range_beyond_the_allowed_share(
    tmp_path: Path, small_parquet: Path, state: Settings
) -> None:
    def allow_two_percent(raw: dict) -> None:
        raw["columns"]["childs"]["max_invalid_share"] = 0.02

    def five_percent_out(table: pd.DataFrame) -> pd.DataFrame:
        childs = table["childs"].copy()
        childs.iloc[: len(table) // 20] = 30.0  # max is 8
        return table.assign(childs=childs)

    data = _bad_csv(tmp_path, small_parquet, five_percent_out)
    path = _config_with(tmp_path, data, allow_two_percent)
    output = _assert_refused(_train(path), state, str(data), "'childs'", "max_invalid_share")
    assert "30.0" in output


# --- estimator -----------------------------------------------------------------------------


def test_import_path_that_is_not_an_estimator(
    tmp_path: Path, small_parquet: Path, state: Settings
) -> None:
    def ordered_dict(raw: dict) -> None:
        raw["model"] = {"estimator": "collections.OrderedDict"}

    path = _config_with(tmp_path, small_parquet, ordered_dict)
    _assert_refused(
        _train(path), state, "model.estimator", "collections.OrderedDict", "scikit-learn"
    )


# --- champion ------------------------------------------------------------------------------


def test_fine_tune_without_a_champion(small_config: Path, state: Settings) -> None:
    result = _train(small_config, "--mode", "fine_tune")
    _assert_refused(result, state, MODEL, "no champion")


def test_sensitive_column_missing_from_the_data(
    tmp_path: Path, small_parquet: Path, state: Settings
) -> None:
    """The fairness check needs the sensitive column on the holdout rows: refused up front."""
    data = _bad_csv(tmp_path, small_parquet, lambda t: t.drop(columns=["gender"]))
    _assert_refused(
        _train(_config_with(tmp_path, data)), state, str(data), "missing required column 'gender'"
    )
