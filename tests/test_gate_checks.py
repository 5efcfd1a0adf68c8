"""Fairness, robustness, budget and slice evidence, the checks made from it, and the decision
rules of the approval policy. Generated data where the truth is known by construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict, write_config
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from modelcycle import gate
from modelcycle.config import PipelineConfig, load_config, parse_config
from modelcycle.errors import ConfigError, DataError
from modelcycle.evaluation import Outputs, predict_outputs
from modelcycle.gate import budget_evidence, fairness_evidence, robustness_evidence
from modelcycle.training import sample_weights, train


def _config(categorical: list[str], **gate_spec: Any) -> PipelineConfig:
    return parse_config(
        {
            "name": "loans",
            "owner": "credit-risk",
            "description": "synthetic approvals",
            "intended_use": "tests",
            "task": "binary_classification",
            "data": {"source": "unused.csv"},
            "target": "y",
            "features": {"numeric": ["x1", "x2"], "categorical": categorical},
            "sensitive_columns": ["gender"],
            "columns": {"x1": {"type": "numeric", "min": -4, "max": 4}},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"primary_metric": "roc_auc", "positive_class": 1},
            "gate": gate_spec,
        }
    )


FAIR_LIMITS = {
    "fairness": {
        "max_selection_rate_gap": 0.1,
        "min_selection_rate_ratio": 0.8,
        "max_tpr_gap": 0.1,
    }
}


def _people(n: int, seed: int) -> pd.DataFrame:
    """Merit (x1, x2) decides the true label; gender is independent of merit."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    gender = rng.choice(["Female", "Male"], size=n)
    y = (x1 + 0.5 * x2 + 0.5 * rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "gender": gender, "y": y})


def _biased_history(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Past decisions that approved men more and women less than their merit."""
    rng = np.random.default_rng(seed)
    male = frame["gender"] == "Male"
    noise = rng.random(len(frame))
    biased = np.where(male, frame["y"] | (noise < 0.5), frame["y"] & (noise < 0.4))
    return frame.assign(y=biased.astype(int))


def _fit(config: PipelineConfig, frame: pd.DataFrame) -> Pipeline:
    return train(config, frame[config.features.all], frame["y"]).pipeline


def test_a_model_that_discriminates_by_a_sensitive_column_fails_fairness() -> None:
    history, holdout = _people(4000, 1), _people(2000, 2)
    biased_config = _config(["gender"], **FAIR_LIMITS)
    biased = _fit(biased_config, _biased_history(history, 3))
    outputs = predict_outputs(biased, holdout[biased_config.features.all], biased_config)
    checks = gate.fairness_checks(fairness_evidence(holdout, outputs, biased_config), biased_config)
    failed = {c.name for c in checks if c.failed}
    assert failed == {
        "fairness:gender:selection_rate_gap",
        "fairness:gender:selection_rate_ratio",
        "fairness:gender:tpr_gap",
    }
    # It uses gender itself: flipping only gender flips many decisions.
    evidence = robustness_evidence(biased, holdout, biased_config)
    assert evidence["counterfactual"]["gender"]["change_rate"] > 0.2
    robust = {c.name: c for c in gate.robustness_checks(evidence, biased_config)}
    assert robust["robustness:counterfactual:gender"].failed

    fair_config = _config([], **FAIR_LIMITS)
    fair = _fit(fair_config, history)
    outputs = predict_outputs(fair, holdout[fair_config.features.all], fair_config)
    checks = gate.fairness_checks(fairness_evidence(holdout, outputs, fair_config), fair_config)
    assert all(c.passed and c.judged for c in checks)


def test_group_rates_are_counted_by_hand_and_small_groups_are_not_judged() -> None:
    config = _config([], fairness={"min_group_rows": 3, "max_tpr_gap": 0.3})
    holdout = pd.DataFrame(
        {
            "gender": ["F", "F", "F", "F", "M", "M", "M", "X", None, "F"],
            "y": [1, 1, 0, 0, 1, 1, 0, 1, 0, 1],
            "x1": 0.0,
            "x2": 0.0,
        }
    )
    pred = np.array([1, 0, 1, 0, 1, 1, 1, 0, 0, 1])
    evidence = fairness_evidence(holdout, Outputs(pred, None, np.array([0, 1])), config)["gender"]
    groups = {g["group"]: g for g in evidence["groups"]}
    # F: rows 0-3 and 9 -> predicted 1 in 3 of 5; true positives 2 of 3 positives.
    assert groups["F"]["selection_rate"]["1"] == pytest.approx(3 / 5)
    assert groups["F"]["true_positive_rate"]["1"] == pytest.approx(2 / 3)
    assert groups["M"]["selection_rate"]["1"] == pytest.approx(1.0)
    assert groups["M"]["true_positive_rate"]["1"] == pytest.approx(1.0)
    assert not groups["X"]["judged"] and not groups["(missing)"]["judged"]
    assert evidence["judged_groups"] == 2
    assert evidence["selection_rate_gap"] == pytest.approx(0.4)
    assert evidence["selection_rate_ratio"] == pytest.approx(0.6)
    assert evidence["tpr_gap"] == pytest.approx(1 / 3)
    checks = {c.name: c for c in gate.fairness_checks({"gender": evidence}, config)}
    assert checks["fairness:gender:tpr_gap"].failed  # 0.333 > 0.3
    assert not checks["fairness:gender:selection_rate_gap"].judged  # no limit: reported


def test_one_judged_group_is_reported_not_judged() -> None:
    config = _config([], **FAIR_LIMITS)
    holdout = pd.DataFrame({"gender": ["F"] * 40 + ["M"] * 5, "y": [1, 0] * 22 + [1]})
    outputs = Outputs(np.ones(45, dtype=int), None, np.array([0, 1]))
    checks = gate.fairness_checks(fairness_evidence(holdout, outputs, config), config)
    assert all(not c.judged and c.passed for c in checks)
    assert "reported, not judged" in checks[0].detail


def test_regression_fairness_is_the_gap_in_mean_error() -> None:
    raw = demo_config_dict()
    raw["columns"].pop("high_income")
    raw.update(
        task="regression",
        target="realrinc",
        split={"strategy": "random"},
        model={"estimator": "sklearn.linear_model.Ridge"},
        evaluation={"primary_metric": "rmse"},
        gate={"floors": {}, "fairness": {"max_mean_error_gap": 500.0, "min_group_rows": 2}},
    )
    config = parse_config(raw)
    holdout = pd.DataFrame({"gender": ["F", "F", "M", "M"], "realrinc": [10.0, 20.0, 10.0, 20.0]})
    pred = np.array([9.0, 19.0, 1010.0, 1020.0])  # women under by 1, men over by 1000
    evidence = fairness_evidence(holdout, Outputs(pred), config)
    assert evidence["gender"]["mean_error_gap"] == pytest.approx(1001.0)
    (check,) = gate.fairness_checks(evidence, config)
    assert check.failed and check.name == "fairness:gender:mean_error_gap"


def test_sensitive_column_missing_from_the_holdout_is_named() -> None:
    config = _config([])
    holdout = _people(50, 0).drop(columns=["gender"])
    with pytest.raises(DataError, match=r"holdout has no sensitive column\(s\) \['gender'\]"):
        fairness_evidence(holdout, Outputs(np.zeros(50, dtype=int)), config)


def test_edge_cases_are_counted_and_a_brittle_pipeline_fails_them() -> None:
    config = _config(["gender"])
    frame = _people(600, 4)
    sturdy = _fit(config, frame)  # imputers and handle_unknown="ignore"
    evidence = robustness_evidence(sturdy, frame, config)
    for kind in ("missing_values", "unseen_categories", "out_of_range"):
        assert evidence["edge_cases"][kind]["failed"] == 0
        assert evidence["edge_cases"][kind]["predicted"] == evidence["edge_cases"][kind]["rows"]
    # 25 base rows: missing = 3 single columns + all at once; unseen = 1 categorical column;
    # out of range = 2 numeric columns x (above, below).
    assert evidence["edge_cases"]["missing_values"]["rows"] == 25 * 4
    assert evidence["edge_cases"]["unseen_categories"]["rows"] == 25
    assert evidence["edge_cases"]["out_of_range"]["rows"] == 25 * 4

    brittle = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [("cat", OneHotEncoder(handle_unknown="error"), ["gender"])],
                    remainder="passthrough",
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(frame[config.features.all], frame["y"])
    evidence = robustness_evidence(brittle, frame, config)
    assert evidence["edge_cases"]["unseen_categories"]["failed"] == 25
    assert evidence["edge_cases"]["missing_values"]["failed"] > 0  # no imputer: NaN refused
    assert evidence["edge_cases"]["out_of_range"]["failed"] == 0
    failed = {c.name for c in gate.robustness_checks(evidence, config) if c.failed}
    assert {"robustness:edge:unseen_categories", "robustness:edge:missing_values"} <= failed


def test_noise_stability_grows_with_the_noise() -> None:
    frame = _people(1000, 5)
    quiet = _config([], robustness={"noise": 0.0})
    model = _fit(quiet, frame)
    assert robustness_evidence(model, frame, quiet)["noise"]["value"] == 0.0
    loud = _config([], robustness={"noise": 2.0, "max_flip_rate": 0.05})
    evidence = robustness_evidence(model, frame, loud)
    assert evidence["noise"]["value"] > 0.2
    noise_check = gate.robustness_checks(evidence, loud)[0]
    assert noise_check.name == "robustness:noise" and noise_check.failed


def test_budgets_are_judged_only_when_limited() -> None:
    frame = _people(300, 6)
    config = _config([])
    model = _fit(config, frame)
    evidence = budget_evidence(model, frame, config, model_bytes=3_000_000)
    assert evidence["latency_ms_per_1000"] > 0 and evidence["model_mb"] == 3.0
    unlimited = gate.budget_checks(evidence, config)
    assert [c.judged for c in unlimited] == [False, False]
    tight = _config([], budgets={"max_latency_ms_per_1000": 1e-6, "max_model_mb": 2.5})
    assert [c.failed for c in gate.budget_checks(evidence, tight)] == [True, True]


def test_slices_below_their_floor_fail_and_small_slices_are_reported() -> None:
    config = _config([], slices={"floors": {"roc_auc": 0.7}})
    slices = [
        {"column": "gender", "value": "F", "rows": 500, "enough_rows": True, "roc_auc": 0.65},
        {"column": "gender", "value": "M", "rows": 500, "enough_rows": True, "roc_auc": 0.80},
        {"column": "gender", "value": "X", "rows": 4, "enough_rows": False, "roc_auc": 0.10},
    ]
    checks = {c.name: c for c in gate.slice_checks(slices, config)}
    assert checks["slice:gender=F:roc_auc"].failed
    assert checks["slice:gender=M:roc_auc"].passed
    small = checks["slice:gender=X:roc_auc"]
    assert not small.judged and small.value == 0.10 and "not judged" in small.detail


def test_balancing_weights_give_each_group_the_same_total() -> None:
    config = _config([], **{})
    balanced = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={"balance": config.model.balance.model_copy(update={"classes": True})}
            )
        }
    )
    frame = pd.DataFrame({"y": [1] * 10 + [0] * 90, "gender": ["F"] * 100})
    assert sample_weights(frame, config) is None
    weights = sample_weights(frame, balanced)
    assert weights[:10].sum() == pytest.approx(weights[10:].sum())
    assert weights.mean() == pytest.approx(1.0)


def _check(kind: str, passed: bool) -> gate.GateCheck:
    return gate.GateCheck(f"{kind}:x", 1.0, 0.0, ">=", passed, "d", kind)


@pytest.mark.parametrize(
    ("mode", "checks", "outcome"),
    [
        ("never", [_check("floors", True)], "promote"),
        ("never", [_check("fairness", False)], "reject"),
        ("required", [_check("floors", True)], "needs_approval"),
        ("required", [_check("floors", False)], "reject"),
        ("borderline", [_check("floors", True)], "promote"),
        ("borderline", [_check("fairness", False), _check("slices", False)], "needs_approval"),
        ("borderline", [_check("fairness", False), _check("budgets", False)], "reject"),
    ],
)
def test_approval_policy_decides_who_decides(mode: str, checks: list, outcome: str) -> None:
    config = _config([], approval={"mode": mode})
    assert gate.decide(checks, config).outcome == outcome


def test_an_answer_or_a_timeout_settles_a_waiting_decision() -> None:
    waiting = gate.decide([_check("floors", True)], _config([], approval={"mode": "required"}))
    yes = gate.with_approval(waiting, approved=True, reviewer="ana", comment="ok", at="t")
    assert yes.outcome == "promote" and "approved by ana (ok)" in yes.reasons[-1]
    late = gate.with_approval(
        waiting, approved=True, reviewer="-", comment="", at="t", timed_out=True, timeout_seconds=5
    )
    assert late.outcome == "reject" and late.approval["timed_out"]
    with pytest.raises(ValueError, match="not waiting for approval"):
        gate.with_approval(yes, approved=True, reviewer="ana", comment="", at="t")


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ("non_inferiority", {"confidence": 1.5}, "gate.non_inferiority.confidence"),
        ("non_inferiority", {"confidence": 0.0}, "gate.non_inferiority.confidence"),
        ("non_inferiority", {"bootstrap": -5}, "gate.non_inferiority.bootstrap"),
        ("non_inferiority", {"max_drop": -0.1}, "gate.non_inferiority.max_drop"),
        ("robustness", {"rows": 0}, "gate.robustness.rows"),
        ("fairness", {"max_tpr_gap": 2.0}, "gate.fairness.max_tpr_gap"),
        ("budgets", {"max_model_mb": -1}, "gate.budgets.max_model_mb"),
        ("approval", {"timeout_seconds": 0}, "gate.approval.timeout_seconds"),
        ("approval", {"mode": "sometimes"}, "gate.approval.mode"),
    ],
)
def test_impossible_gate_limits_fail_at_load_naming_the_field(
    tmp_path: Path, section: str, value: dict[str, Any], field: str
) -> None:
    raw = demo_config_dict()
    raw["gate"][section] = {**raw["gate"].get(section, {}), **value}
    path = write_config(tmp_path, raw)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_multiclass_fairness_takes_the_worst_class() -> None:
    raw = demo_config_dict()
    raw.update(
        task="multiclass_classification",
        split={"strategy": "stratified"},
        evaluation={"primary_metric": "accuracy"},
        gate={"floors": {}, "fairness": {"min_group_rows": 1, "max_selection_rate_gap": 0.5}},
    )
    config = parse_config(raw)
    holdout = pd.DataFrame({"gender": ["F"] * 4 + ["M"] * 4, "high_income": list("aabcaabc")})
    pred = np.array(list("aaaa" + "abcc"))
    outputs = Outputs(pred, None, np.array(["a", "b", "c"]))
    evidence = fairness_evidence(holdout, outputs, config)["gender"]
    # Selection rates F: a 1, b 0, c 0; M: a .25, b .25, c .5 -> worst gap .75 (class a).
    assert evidence["selection_rate_gap"] == pytest.approx(0.75)
    # TPR F: a 1, b 0, c 0; M: a .5, b 1, c 1 -> worst gap 1.0 (classes b and c).
    assert evidence["tpr_gap"] == pytest.approx(1.0)
    judged = {
        c.name: c.failed for c in gate.fairness_checks({"gender": evidence}, config) if c.judged
    }
    assert judged == {  # the ratio has no limit here; the TPR gap has the default 0.2
        "fairness:gender:selection_rate_gap": True,
        "fairness:gender:tpr_gap": True,
    }


# --- checks that say when they cannot judge ------------------------------------------------


def test_a_one_class_slice_is_not_judged_and_says_why() -> None:
    """Slice X holds only positives: ROC AUC has no meaning there, and recall has no meaning
    on slice Z, which holds no positive at all; neither may fail (or pass) the gate."""
    config = _config([], slices={"floors": {"roc_auc": 0.7, "recall": 0.5}})
    config = config.model_copy(
        update={
            "evaluation": config.evaluation.model_copy(
                update={"slices": ["site"], "extra_metrics": ["recall"]}
            )
        }
    )
    rng = np.random.default_rng(0)
    n = 300
    site = np.repeat(["X", "Y", "Z"], n)
    y = np.concatenate([np.ones(n, int), rng.integers(0, 2, n), np.zeros(n, int)])
    score = np.clip(0.5 * y + 0.5 * rng.random(3 * n), 0, 1)
    outputs = Outputs((score > 0.5).astype(int), np.c_[1 - score, score], np.array([0, 1]))
    holdout = pd.DataFrame({"site": site, "y": y})
    from modelcycle.evaluation import slice_metrics

    checks = {c.name: c for c in gate.slice_checks(slice_metrics(holdout, outputs, config), config)}
    one_class = checks["slice:site=X:roc_auc"]
    assert not one_class.judged and not one_class.failed
    assert "only one class of 'y' (1)" in one_class.detail and "not judged" in one_class.detail
    no_positives = checks["slice:site=Z:recall"]
    assert not no_positives.judged and "no rows of the positive class 1" in no_positives.detail
    # The mixed slice is judged as before, and the one-class slice's recall (all positives) is.
    assert checks["slice:site=Y:roc_auc"].judged and checks["slice:site=Y:roc_auc"].passed
    assert checks["slice:site=X:recall"].judged


def _rare_positives(n: int, seed: int) -> pd.DataFrame:
    """One positive in 200, barely related to x1: any sane fit predicts 0 for everyone."""
    rng = np.random.default_rng(seed)
    frame = _people(n, seed)
    y = (rng.random(n) < 0.005 + 0.003 * (frame["x1"] > 2)).astype(int)
    return frame.assign(y=y)


def test_a_degenerate_model_fails_its_own_check_and_its_fairness_is_not_meaningful() -> None:
    config = _config(["gender"], **FAIR_LIMITS)
    holdout = _rare_positives(3000, 5)
    model = _fit(config, _rare_positives(6000, 4))
    outputs = predict_outputs(model, holdout[config.features.all], config)
    assert (outputs.pred == 0).mean() > 0.99  # the construction did what it says

    degenerate = gate.degenerate_check(outputs, config)
    assert degenerate is not None and degenerate.name == "degenerate_predictions"
    assert degenerate.failed and degenerate.value > 0.99 and degenerate.limit == 0.99
    assert "most frequent class '0'" in degenerate.detail

    evidence = fairness_evidence(holdout, outputs, config)
    fairness = gate.fairness_checks(evidence, config, degenerate)
    assert fairness and all(not c.judged and "not meaningful" in c.detail for c in fairness)
    decision = gate.decide([degenerate, *fairness], config)
    assert decision.outcome == "reject"
    assert decision.reasons == [degenerate.detail]


def test_a_model_that_uses_both_classes_passes_the_degenerate_check() -> None:
    config = _config([], **FAIR_LIMITS)
    holdout = _people(2000, 2)
    model = _fit(config, _people(4000, 1))
    outputs = predict_outputs(model, holdout[config.features.all], config)
    check = gate.degenerate_check(outputs, config)
    assert check is not None and check.judged and check.passed
    assert 0.4 < check.value < 0.6  # merit is symmetric around 0 by construction
    # Judged the usual way when the model is not degenerate.
    evidence = fairness_evidence(holdout, outputs, config)
    assert all(c.judged for c in gate.fairness_checks(evidence, config, check))


def test_regression_counterfactual_says_it_measures_target_standard_deviations() -> None:
    config = parse_config(
        {
            "name": "prices",
            "owner": "t",
            "description": "generated",
            "intended_use": "tests",
            "task": "regression",
            "data": {"source": "unused.csv"},
            "target": "y",
            "features": {"numeric": ["x1"], "categorical": ["gender"]},
            "sensitive_columns": ["gender"],
            "split": {"strategy": "random"},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "evaluation": {"primary_metric": "rmse"},
        }
    )
    frame = _people(1500, 9)
    # y moves by 1.0 between the groups and has a std near 1.1: the change is about 0.9 std.
    frame = frame.assign(y=frame["x1"] * 0.5 + (frame["gender"] == "Male") * 1.0)
    model = train(config, frame[config.features.all], frame["y"]).pipeline
    evidence = robustness_evidence(model, frame, config)
    counterfactual = evidence["counterfactual"]["gender"]
    assert counterfactual["measure"] == "mean_change_in_target_std"
    expected = 1.0 / frame["y"].std()
    assert counterfactual["change_rate"] == pytest.approx(expected, rel=0.05)
    (check,) = [c for c in gate.robustness_checks(evidence, config) if "counterfactual" in c.name]
    assert "in target standard deviations" in check.detail and "share" not in check.detail
    assert check.failed  # 0.9 std is far above the 0.05 default
