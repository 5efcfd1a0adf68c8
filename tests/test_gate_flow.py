"""The gate inside the training flow, on real (sampled) GSS data: non-inferiority against the
champion, and human approval through Prefect's pause-with-input form."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_config
from typer.testing import CliRunner

from modelcycle.registry import Registry, VersionStatus

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL = "gss-income"


def _run(config: Path, **kwargs: Any) -> dict[str, Any]:
    from flows.training import training

    return training(config_path=str(config), **kwargs)


def _variant(base: Path, folder: Path, name: str, change: Callable[[dict], Any]) -> Path:
    raw = yaml.safe_load(base.read_text())
    change(raw)
    return write_config(folder, raw, name)


def _only_the_comparison_decides(raw: dict) -> None:
    raw["gate"]["floors"] = {}
    raw["gate"]["slices"] = {"floors": {}}
    raw["gate"]["robustness"]["max_flip_rate"] = 1.0
    # Three stumps answer "no" for every respondent: the degenerate check would fail them too.
    raw["gate"]["degenerate_predictions"] = {"max_class_share": 1.0}


def test_a_significantly_worse_challenger_is_never_promoted(small_config, state, tmp_path):
    _run(small_config)

    def weaker(raw: dict) -> None:
        _only_the_comparison_decides(raw)
        raw["model"]["params"].update(max_iter=3, max_leaf_nodes=2)  # three stumps

    outcome = _run(_variant(small_config, tmp_path, "weak.yaml", weaker))

    registry = Registry(state.registry_url)
    assert outcome["status"] == "rejected" and outcome["gate"] == "reject"
    assert outcome["failed_checks"] == ["non_inferiority:roc_auc"]
    interval = outcome["non_inferiority"]
    assert interval["high"] < 0  # significantly worse, not just unlucky
    assert registry.champion(MODEL).version == 1
    rejected = registry.get_version(MODEL, 2)
    assert rejected.status is VersionStatus.REJECTED
    evidence = json.loads((Path(rejected.artifact_uri) / "gate/non_inferiority.json").read_text())
    assert evidence["low"] == interval["low"] and evidence["rows"] == interval["rows"]
    assert registry.audit_log(MODEL)[-1].action == "reject"


def test_a_challenger_equal_within_max_drop_is_promoted(small_config, state, tmp_path):
    _run(small_config)

    def slightly_different(raw: dict) -> None:
        _only_the_comparison_decides(raw)
        raw["gate"]["non_inferiority"]["max_drop"] = 0.02
        raw["model"]["params"]["max_iter"] = 45

    outcome = _run(_variant(small_config, tmp_path, "similar.yaml", slightly_different))

    interval = outcome["non_inferiority"]
    assert interval["difference"] != 0.0  # a different model...
    assert abs(interval["difference"]) < 0.02  # ...of equal quality within max_drop
    assert interval["low"] > -0.02
    assert outcome["status"] == "champion" and outcome["gate"] == "promote"
    assert Registry(state.registry_url).champion(MODEL).version == 2


# --- human approval ------------------------------------------------------------------------


def _paused_runs() -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    flow_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        return {str(r.id) for r in client.read_flow_runs(flow_run_filter=flow_filter)}


class Reviewer(threading.Thread):
    """Waits for the flow to pause, then submits the given answers in order."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.answers = answers
        self.known = _paused_runs()  # runs left paused by earlier tests (timeouts)
        self.refusals: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        from prefect.flow_runs import resume_flow_run

        try:
            deadline = time.monotonic() + 120
            while not (new := _paused_runs() - self.known):
                if time.monotonic() > deadline:
                    raise TimeoutError("the flow never paused")
                time.sleep(0.3)
            (run_id,) = new
            for answer in self.answers:
                try:
                    resume_flow_run(run_id, run_input=answer)
                except RuntimeError as exc:
                    self.refusals.append(str(exc))
        except BaseException as exc:
            self.error = exc


def _approval_config(base: Path, folder: Path, timeout: int, balance: bool = False) -> Path:
    def change(raw: dict) -> None:
        raw["gate"]["approval"] = {
            "mode": "required",
            "timeout_seconds": timeout,
            "poll_seconds": 1,
        }
        if balance:
            raw["model"]["balance"] = {"sensitive_groups": True}

    return _variant(base, folder, "approval.yaml", change)


def test_approval_through_the_pause_form_resumes_and_records_the_reviewer(
    small_config, state, tmp_path
):
    config = _approval_config(small_config, tmp_path, timeout=300, balance=True)
    reviewer = Reviewer([{"approved": True, "reviewer": "ana", "comment": "checked the slices"}])
    reviewer.start()
    outcome = _run(config)
    reviewer.join(timeout=30)
    assert reviewer.error is None and reviewer.refusals == []

    assert outcome["status"] == "champion"
    assert outcome["approval"]["reviewer"] == "ana" and outcome["approval"]["approved"]
    registry = Registry(state.registry_url)
    log = registry.audit_log(MODEL)
    assert [(e.action, e.actor) for e in log] == [
        ("register", "training-flow"),
        ("approve", "ana"),
        ("promote", "training-flow"),
    ]
    assert log[1].reason == "checked the slices"
    assert "approved by ana" in log[2].reason

    from modelcycle.cli import app

    card = CliRunner().invoke(app, ["models", "card", MODEL, "1"]).output
    assert "# Model card: gss-income v1" in card
    assert "approved by **ana**" in card and "checked the slices" in card
    # Balancing was on: the card compares fairness with the same fit without weights.
    assert "same fit without balancing" in card
    facts = json.loads(
        (Path(registry.get_version(MODEL, 1).artifact_uri) / "card.json").read_text()
    )
    assert facts["fairness_unweighted"]["gender"]["tpr_gap"] is not None
    assert facts["gate"]["approval"]["reviewer"] == "ana"

    # The card is only ever rendered from the facts the manifest vouches for.
    facts_file = Path(registry.get_version(MODEL, 1).artifact_uri) / "card.json"
    facts_file.write_text(facts_file.read_text().replace("ana", "eve"))
    refused = CliRunner().invoke(app, ["models", "card", MODEL, "1"])
    assert refused.exit_code == 1 and "does not match the run's manifest" in refused.output


def test_approval_input_without_a_reviewer_is_refused(small_config, state, tmp_path):
    config = _approval_config(small_config, tmp_path, timeout=300)
    reviewer = Reviewer(
        [
            {"approved": True, "reviewer": ""},
            {"approved": True, "reviewer": "   "},
            {"approved": True},
            {"approved": False, "reviewer": "bob", "comment": "not this quarter"},
        ]
    )
    reviewer.start()
    outcome = _run(config)
    reviewer.join(timeout=30)
    assert reviewer.error is None
    assert len(reviewer.refusals) == 3  # the three answers without a name
    assert all("reviewer" in r for r in reviewer.refusals), reviewer.refusals

    registry = Registry(state.registry_url)
    assert outcome["status"] == "rejected"
    assert registry.champion(MODEL) is None
    assert registry.get_version(MODEL, 1).status is VersionStatus.REJECTED
    entry = registry.audit_log(MODEL)[-1]
    assert (entry.action, entry.actor, entry.reason) == ("disapprove", "bob", "not this quarter")


def test_approval_that_times_out_rejects(small_config, state, tmp_path):
    _run(small_config)  # a champion that must survive
    state_ = _run(_approval_config(small_config, tmp_path, timeout=2), return_state=True)
    # The run ends Completed with the rejection recorded, not Failed by the expired pause.
    assert state_.is_completed(), state_
    outcome = state_.result()

    registry = Registry(state.registry_url)
    assert outcome["status"] == "rejected"
    assert outcome["approval"]["timed_out"] is True
    assert registry.champion(MODEL).version == 1
    assert registry.get_version(MODEL, 2).status is VersionStatus.REJECTED
    entry = registry.audit_log(MODEL)[-1]
    assert entry.action == "approval-timeout" and entry.version == 2
    assert "no reviewer answered within 2 s" in registry.get_version(MODEL, 2).gate["reasons"][-1]


def test_approval_input_model_refuses_a_blank_name() -> None:
    from pydantic import ValidationError

    from tasks.approval import ApprovalInput

    with pytest.raises(ValidationError, match="reviewer"):
        ApprovalInput(approved=True, reviewer="  ")
    assert ApprovalInput(approved=False, reviewer=" ana ").reviewer == "ana"


def test_a_regression_pipeline_goes_through_every_kind_of_check(small_config, state, tmp_path):
    def regression(raw: dict) -> None:
        raw["columns"].pop("high_income")
        raw.update(task="regression", target="realrinc")
        raw["model"] = {
            "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "params": {"max_iter": 20},
        }
        raw["evaluation"] = {"primary_metric": "rmse", "extra_metrics": ["mae", "r2"]}
        raw["evaluation"]["slices"] = ["gender"]
        raw["gate"] = {
            "floors": {"r2": 0.1},
            "non_inferiority": {"bootstrap": 100, "max_drop": 500.0},
            "slices": {"floors": {"mae": 50_000.0}},
            "fairness": {"max_mean_error_gap": 50_000.0},
        }

    def strict_fairness(raw: dict) -> None:
        regression(raw)
        raw["gate"]["fairness"]["max_mean_error_gap"] = 1.0  # dollars: tighter than any model

    _run(_variant(small_config, tmp_path, "regression.yaml", regression))
    outcome = _run(_variant(small_config, tmp_path, "strict.yaml", strict_fairness))

    assert outcome["failed_checks"] == ["fairness:gender:mean_error_gap"]
    assert outcome["status"] == "rejected"
    interval = outcome["non_inferiority"]
    assert interval["metric"] == "rmse" and interval["higher_is_better"] is False
    kinds = {c["kind"] for c in Registry(state.registry_url).get_version(MODEL, 2).gate["checks"]}
    assert kinds == {"floors", "non_inferiority", "slices", "fairness", "robustness", "budgets"}
