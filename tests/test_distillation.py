"""Distillation: the synthetic neighbours, the soft-label student, the fidelity check, and the
training flow's `distil` mode judging a student with the teacher as champion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_config
from sklearn.base import clone
from typer.testing import CliRunner

from modelcycle.config import TrainingMode, TrainingOverrides, apply_overrides, load_config
from modelcycle.data import clean
from modelcycle.evaluation import Outputs
from modelcycle.gate import fidelity_check, fidelity_evidence
from modelcycle.registry import Registry, VersionStatus
from modelcycle.training import distil, neighbours, train

MODEL = "gss-income"


def _config(small_config: Path, **distillation: Any):
    raw = yaml.safe_load(small_config.read_text())
    raw["model"]["distillation"] = distillation
    return load_config(write_config(small_config.parent, raw, "distil.yaml"))


def _table(small_parquet: Path, config) -> pd.DataFrame:
    """The rows as the flow trains on them: cleaned (missing markers as the pipeline expects)."""
    cleaned, _ = clean(pd.read_parquet(small_parquet), config)
    return cleaned[[*config.features.all, config.target]].reset_index(drop=True)


def test_neighbours_perturb_numbers_by_their_spread_and_redraw_seen_categories(
    small_config, small_parquet
):
    config = _config(small_config, neighbours=3, jitter=0.2, resample_share=0.3, seed=5)
    X = _table(small_parquet, config)[config.features.all]

    out = neighbours(X, config)

    assert len(out) == 3 * len(X) and list(out.columns) == list(X.columns)
    original = pd.concat([X] * 3, ignore_index=True)
    age = config.features.numeric[0]
    shift = (out[age] - original[age]).dropna()
    # Gaussian noise of 0.2 column std units: its spread says so (4,000 x 3 draws).
    assert shift.std() == pytest.approx(0.2 * X[age].std(), rel=0.1)
    assert out[age].isna().sum() == original[age].isna().sum()  # missing stays missing
    for column in config.features.categorical:
        seen = set(X[column].dropna())
        assert set(out[column].dropna()) <= seen
        changed = (out[column].astype(object) != original[column].astype(object)).mean()
        assert 0.0 < changed < 0.3  # redrawn (sometimes to the same value), never invented
    again = neighbours(X, config)
    pd.testing.assert_frame_equal(out, again)  # seeded
    assert neighbours(X, _config(small_config, neighbours=0)).empty


def test_a_student_learns_the_teachers_probabilities_not_the_labels(small_config, small_parquet):
    # A teacher of another family (a linear model) makes the difference visible: boosted trees
    # fitted on the 0/1 labels learn the data, fitted on the teacher's soft labels the teacher.
    raw = yaml.safe_load(small_config.read_text())
    raw["model"] = {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 500},
        "distillation": {"neighbours": 1},
    }
    config = load_config(write_config(small_config.parent, raw, "linear.yaml"))
    table = _table(small_parquet, config)
    X, y = table[config.features.all], table[config.target]
    teacher = train(config, X, y).pipeline

    result = distil(teacher, config, X)

    student = result.pipeline
    assert list(student.classes_) == list(teacher.classes_)
    assert result.rows == {"train": len(X), "neighbours": len(X), "fitted": 2 * 2 * len(X)}
    assert result.student == "sklearn.ensemble.HistGradientBoostingClassifier"
    taught = teacher.predict_proba(X)[:, 1]
    gap = np.abs(student.predict_proba(X)[:, 1] - taught).mean()
    hard = clone(student).fit(X, y)
    hard_gap = np.abs(hard.predict_proba(X)[:, 1] - taught).mean()
    assert gap < 0.5 * hard_gap, (gap, hard_gap)
    assert student[:-1] is not teacher[:-1]  # the teacher's preprocessing was copied


def test_a_regression_student_fits_the_teachers_predictions(small_config, small_parquet):
    raw = yaml.safe_load(small_config.read_text())
    raw["task"], raw["target"] = "regression", "age"
    raw["features"]["numeric"] = ["prestg10", "childs"]
    raw["evaluation"] = {"primary_metric": "rmse", "slices": []}
    raw["gate"] = {"floors": {}}
    raw["monitoring"] = {}
    raw["columns"].pop("high_income")
    raw["model"] = {
        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
        "params": {"max_iter": 30},
        "distillation": {"neighbours": 1},
    }
    config = load_config(write_config(small_config.parent, raw, "regression.yaml"))
    table = _table(small_parquet, config).dropna(subset=["age"])
    X, y = table[config.features.all], table["age"]
    teacher = train(config, X, y).pipeline

    student = distil(teacher, config, X).pipeline

    evidence = fidelity_evidence(Outputs(student.predict(X)), Outputs(teacher.predict(X)), config)
    assert evidence["measure"] == "R^2 against the teacher" and evidence["value"] > 0.9


def test_fidelity_is_the_share_of_identical_labels_judged_against_the_configured_floor(
    small_config,
):
    config = _config(small_config, min_fidelity=0.8)
    classes = np.array([0, 1])
    teacher = Outputs(np.array([1, 0, 1, 1, 0]), np.full((5, 2), 0.5), classes)
    proba = np.full((5, 2), 0.5)
    proba[2] = [0.8, 0.2]
    student = Outputs(np.array([1, 0, 0, 1, 0]), proba, classes)

    evidence = fidelity_evidence(student, teacher, config)

    assert evidence["value"] == pytest.approx(0.8) and evidence["rows"] == 5
    assert evidence["max_proba_difference"] == pytest.approx(0.3)
    assert fidelity_check(evidence, config).passed
    strict = _config(small_config, min_fidelity=0.81)
    check = fidelity_check(evidence, strict)
    assert check.failed and check.kind == "fidelity" and check.evidence == "gate/fidelity.json"


def test_student_overrides_replace_the_configured_student_and_its_parameters(small_config):
    config = _config(small_config, student="sklearn.tree.DecisionTreeClassifier", params={})
    changed = apply_overrides(
        config, TrainingOverrides(student="sklearn.linear_model.LogisticRegression")
    )
    assert changed.model.distillation.student == "sklearn.linear_model.LogisticRegression"
    assert changed.model.distillation.params is None  # not the old student's parameters
    tuned = apply_overrides(config, TrainingOverrides(student_params={"max_depth": 3}))
    assert tuned.model.distillation.student == "sklearn.tree.DecisionTreeClassifier"
    assert tuned.model.distillation.params == {"max_depth": 3}


# -- the training flow's distil mode -------------------------------------------------------


def _run(config: Path, **kwargs: Any) -> dict[str, Any]:
    from flows.training import training

    return training(config_path=str(config), **kwargs)


def _distil_variant(small_config: Path, student: str, params: dict[str, Any]) -> Path:
    raw = yaml.safe_load(small_config.read_text())
    raw["model"]["distillation"] = {
        "student": student,
        "params": params,
        "neighbours": 1,
        "min_fidelity": 0.85,
    }
    raw["gate"]["non_inferiority"]["max_drop"] = 0.02
    return write_config(small_config.parent, raw, f"distil-{len(params)}.yaml")


@pytest.mark.usefixtures("prefect_harness")
def test_a_student_that_loses_too_much_is_rejected_and_one_within_limits_is_registered(
    small_config, state, monkeypatch: pytest.MonkeyPatch
):
    teacher = _run(small_config)
    assert teacher["status"] == "champion"
    _models_distil_runs_the_distil_mode_on_the_champions_recorded_config(state, monkeypatch)

    stump = _distil_variant(small_config, "sklearn.tree.DecisionTreeClassifier", {"max_depth": 1})
    rejected = _run(stump, mode=TrainingMode.distil)

    assert rejected["status"] == "rejected" and rejected["parent_version"] == 1
    assert "fidelity" in rejected["failed_checks"]
    assert "non_inferiority:roc_auc" in rejected["failed_checks"]

    good = _distil_variant(
        small_config,
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 50, "max_leaf_nodes": 15},
    )
    accepted = _run(good, mode=TrainingMode.distil)

    registry = Registry(state.registry_url)
    assert accepted["gate"] == "promote", accepted["failed_checks"]
    version = registry.get_version(MODEL, accepted["version"])
    assert version.parent_version == 1 and version.status is VersionStatus.CHAMPION
    folder = Path(version.artifact_uri)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["relation"] == "distilled" and manifest["training_mode"] == "distil"
    fidelity = json.loads((folder / "gate/fidelity.json").read_text())
    assert fidelity["value"] >= 0.85
    checks = {c["name"]: c for c in version.gate["checks"]}
    assert checks["fidelity"]["value"] == fidelity["value"] and checks["fidelity"]["judged"]
    facts = json.loads((folder / "card.json").read_text())
    distilled = facts["distillation"]
    teacher_bytes = distilled["teacher_measures"]["model_bytes"]
    assert distilled["student_measures"]["model_bytes"] < teacher_bytes
    assert distilled["teacher_measures"]["metrics"] == accepted["champion_metrics"]
    card = (folder / "card.md").read_text()
    assert (
        "## Distilled from v1" in card and "| measure | student (this version) | teacher |" in card
    )


def _models_distil_runs_the_distil_mode_on_the_champions_recorded_config(
    state, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command hands the flow the champion's own config (as its verified manifest holds
    it) and the student options; the flow itself is run by the test above."""
    from modelcycle.cli import _train as train_cli
    from modelcycle.cli import app

    calls: list[tuple[str, TrainingMode, dict[str, Any]]] = []
    monkeypatch.setattr(
        train_cli, "run_training", lambda *args: calls.append(args) or {"stub": True}
    )
    monkeypatch.setattr(train_cli, "print_training_outcome", lambda outcome: None)
    runner = CliRunner()

    bad = runner.invoke(app, ["models", "distil", MODEL, "--params", "[1]"])
    assert bad.exit_code == 1 and "--params: expected a JSON object" in bad.output
    outside = runner.invoke(app, ["models", "distil", MODEL, "--student", "this.Anything"])
    assert outside.exit_code == 1 and "outside the packages allowed" in outside.output
    regressor = ["models", "distil", MODEL, "--student", "sklearn.tree.DecisionTreeRegressor"]
    wrong_task = runner.invoke(app, regressor)
    assert wrong_task.exit_code == 1 and "is not a classifier" in wrong_task.output
    assert calls == []  # refused before any flow run
    result = runner.invoke(
        app,
        [
            "models",
            "distil",
            MODEL,
            "--student",
            "sklearn.tree.DecisionTreeClassifier",
            "--params",
            '{"max_depth": 4}',
        ],
    )

    assert result.exit_code == 0, result.output
    ((path, mode, overrides),) = calls
    assert mode is TrainingMode.distil
    assert overrides == {
        "student": "sklearn.tree.DecisionTreeClassifier",
        "student_params": {"max_depth": 4},
    }
    champion = Registry(state.registry_url).champion(MODEL)
    recorded = json.loads((Path(champion.artifact_uri) / "manifest.json").read_text())["config"]
    assert yaml.safe_load(Path(path).read_text()) == recorded


def test_drift_cannot_ask_for_a_distilled_retrain(small_config) -> None:
    from modelcycle.errors import ConfigError

    raw = yaml.safe_load(small_config.read_text())
    raw["monitoring"] = {"retrain_mode": "distil"}
    with pytest.raises(
        ConfigError, match=r"monitoring: retrain_mode: distil .* scratch or fine_tune"
    ):
        load_config(write_config(small_config.parent, raw, "drift-distil.yaml"))
