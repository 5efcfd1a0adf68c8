"""The deployment gate: each check states its value, its limit, whether it passed, and the
evidence file it was judged from.

A decision is only ever made from recorded checks, so the registry, the model card and the
UI can show why. Checks that cannot be judged (a slice or group with too few rows, no
champion to compare with) are recorded as `judged: false`, never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from modelcycle.config import PipelineConfig, higher_is_better
from modelcycle.evaluation import Outputs
from modelcycle.gate._bootstrap import PairedInterval

Outcome = Literal["promote", "reject", "needs_approval"]

EVIDENCE = {
    "floors": "metrics.json",
    "non_inferiority": "gate/non_inferiority.json",
    "slices": "slices.json",
    "fairness": "gate/fairness.json",
    "robustness": "gate/robustness.json",
    "budgets": "gate/budgets.json",
    "degenerate_predictions": "gate.json",
    "fidelity": "gate/fidelity.json",
}
DEGENERATE = "degenerate_predictions"


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float | None
    limit: float | None
    comparison: str  # ">=", "<=", ">", "<" or "" when there is no limit
    passed: bool
    detail: str
    kind: str = "floors"
    judged: bool = True
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def failed(self) -> bool:
        return self.judged and not self.passed


@dataclass(frozen=True)
class GateDecision:
    outcome: Outcome
    checks: list[GateCheck]
    champion_version: int | None = None
    approval: dict[str, Any] | None = field(default=None)

    @property
    def passed(self) -> bool:
        return self.outcome == "promote"

    @property
    def reasons(self) -> list[str]:
        failed = [c.detail for c in self.checks if c.failed]
        reasons = failed or ["every judged check passed"]
        if self.approval is not None:
            reasons = [*reasons, _approval_reason(self.approval)]
        return reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.outcome,
            "passed": self.passed,
            "reasons": self.reasons,
            "champion_version": self.champion_version,
            "approval": self.approval,
            "checks": [c.to_dict() for c in self.checks],
        }


def _approval_reason(approval: dict[str, Any]) -> str:
    if approval.get("timed_out"):
        return f"no reviewer answered within {approval['timeout_seconds']} s: rejected"
    verdict = "approved" if approval["approved"] else "rejected"
    comment = f" ({approval['comment']})" if approval.get("comment") else ""
    return f"{verdict} by {approval['reviewer']}{comment}"


def _shown(value: float | None) -> str:
    return "undefined" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _limit_check(
    name: str,
    kind: str,
    value: float | None,
    limit: float | None,
    comparison: str,
    what: str,
) -> GateCheck:
    """value against a limit; no limit means reported, not judged; an undefined value fails."""
    if limit is None:
        return GateCheck(
            name,
            value,
            None,
            "",
            True,
            f"{what} {_shown(value)} (no limit set: reported only)",
            kind,
            judged=False,
            evidence=EVIDENCE[kind],
        )
    ok = {
        ">=": lambda v: v >= limit,
        "<=": lambda v: v <= limit,
        ">": lambda v: v > limit,
        "<": lambda v: v < limit,
    }[comparison]
    passed = _defined(value) and ok(value)
    verdict = "meets" if passed else "fails"
    return GateCheck(
        name=name,
        value=value if _defined(value) else None,
        limit=limit,
        comparison=comparison,
        passed=passed,
        detail=f"{what} {_shown(value)} {verdict} the limit {comparison} {limit:g}",
        kind=kind,
        evidence=EVIDENCE[kind],
    )


def floor_check(metric: str, value: float | None, limit: float) -> GateCheck:
    """A floor for higher-is-better metrics, a ceiling for the others; an undefined value fails."""
    comparison = ">=" if higher_is_better(metric) else "<="
    return _limit_check(f"floor:{metric}", "floors", value, limit, comparison, metric)


def floor_checks(metrics: dict[str, float], config: PipelineConfig) -> list[GateCheck]:
    return [floor_check(m, metrics.get(m), limit) for m, limit in config.gate.floors.items()]


def non_inferiority_check(
    interval: PairedInterval | None, config: PipelineConfig, champion_version: int | None
) -> GateCheck:
    """Judged on the interval's worse end: it must stay within max_drop of the champion."""
    spec = config.gate.non_inferiority
    metric = config.evaluation.primary_metric
    if interval is None:
        return GateCheck(
            name=f"non_inferiority:{metric}",
            value=None,
            limit=None,
            comparison="",
            passed=True,
            detail="no champion yet: nothing to compare with, so non-inferiority is not judged",
            kind="non_inferiority",
            judged=False,
            evidence=EVIDENCE["non_inferiority"],
        )
    margin = 0.0 if spec.require_improvement else spec.max_drop
    pct = f"{interval.confidence:.0%}"
    what = (
        f"{metric}: challenger - champion v{champion_version} = {_shown(interval.difference)}, "
        f"{pct} interval [{_shown(interval.low)}, {_shown(interval.high)}] on the same "
        f"{interval.rows} rows; its "
    )
    if interval.higher_is_better:
        return _limit_check(
            f"non_inferiority:{metric}",
            "non_inferiority",
            interval.low,
            -margin,
            ">",
            what + "lower bound",
        )
    return _limit_check(
        f"non_inferiority:{metric}",
        "non_inferiority",
        interval.high,
        margin,
        "<",
        what + "upper bound",
    )


def _not_judged(check: GateCheck, detail: str) -> GateCheck:
    return replace(check, passed=True, judged=False, detail=detail)


def slice_checks(slices: list[dict[str, Any]], config: PipelineConfig) -> list[GateCheck]:
    """Every slice against the slice floors; a slice too small, or on which the metric has no
    meaning (one class only), is recorded with the reason and not judged."""
    checks = []
    for metric, limit in config.gate.slices.floors.items():
        comparison = ">=" if higher_is_better(metric) else "<="
        for s in slices:
            name = f"slice:{s['column']}={s['value']}:{metric}"
            what = f"{metric} on slice {s['column']}={s['value']} ({s['rows']} rows)"
            check = _limit_check(name, "slices", s.get(metric), limit, comparison, what)
            undefined = (s.get("undefined") or {}).get(metric)
            if undefined is None and not _defined(s.get(metric)):
                undefined = "the metric has no value on this slice"
            if not s["enough_rows"]:
                check = _not_judged(
                    check,
                    f"{what}: fewer than {config.evaluation.min_slice_rows} rows, "
                    "reported, not judged",
                )
            elif undefined is not None:
                check = _not_judged(check, f"{what}: undefined ({undefined}), not judged")
            checks.append(check)
    return checks


def degenerate_check(outputs: Outputs, config: PipelineConfig) -> GateCheck | None:
    """Fails a classifier that predicts one class for more than `max_class_share` of the
    holdout rows; None for regression, which has no classes to collapse onto."""
    if not config.task.is_classification:
        return None
    labels, counts = np.unique(np.asarray(outputs.pred).astype(str), return_counts=True)
    rows = int(counts.sum())
    top = int(np.argmax(counts)) if rows else 0
    share = float(counts[top] / rows) if rows else math.nan
    limit = config.gate.degenerate_predictions.max_class_share
    shares = ", ".join(
        f"{label}: {count / rows:.1%}" for label, count in zip(labels, counts, strict=True)
    )
    most = repr(str(labels[top])) if rows else "-"
    what = (
        f"share of the {rows} holdout rows predicted as the most frequent class {most} "
        f"(predicted: {shares or 'none'})"
    )
    return _limit_check(DEGENERATE, DEGENERATE, share, limit, "<=", what)


def fairness_checks(
    evidence: dict[str, dict[str, Any]],
    config: PipelineConfig,
    degenerate: GateCheck | None = None,
) -> list[GateCheck]:
    """Each limit across the groups of each sensitive column. When the model is degenerate
    (one class for almost every row) the gaps are recorded as not meaningful, not judged: a
    near-constant answer looks fair by construction and its gaps are noise."""
    spec = config.gate.fairness
    meaningless = degenerate is not None and degenerate.failed
    if config.task.is_classification:
        limits = [
            ("selection_rate_gap", spec.max_selection_rate_gap, "<=", "selection-rate gap"),
            ("selection_rate_ratio", spec.min_selection_rate_ratio, ">=", "selection-rate ratio"),
            ("tpr_gap", spec.max_tpr_gap, "<=", "true-positive-rate gap"),
        ]
    else:
        limits = [("mean_error_gap", spec.max_mean_error_gap, "<=", "mean-error gap")]
    checks = []
    for column, report in evidence.items():
        for key, limit, comparison, label in limits:
            value = report.get(key)
            what = f"{label} across {column} ({report['judged_groups']} groups judged)"
            check = _limit_check(
                f"fairness:{column}:{key}", "fairness", value, limit, comparison, what
            )
            if meaningless:
                assert degenerate is not None
                check = _not_judged(
                    check, f"{what}: not meaningful, the model is degenerate ({degenerate.detail})"
                )
            elif value is None:
                check = _not_judged(
                    check,
                    f"{what}: fewer than two groups with {spec.min_group_rows}+ rows, "
                    "reported, not judged",
                )
            checks.append(check)
    return checks


def robustness_checks(evidence: dict[str, Any], config: PipelineConfig) -> list[GateCheck]:
    spec = config.gate.robustness
    classification = config.task.is_classification
    noise = evidence["noise"]
    checks = [
        _limit_check(
            "robustness:noise",
            "robustness",
            noise["value"],
            spec.max_flip_rate if classification else spec.max_mean_change,
            "<=",
            f"{noise['measure']} under noise of {noise['scale_in_std']} std",
        )
    ]
    for kind, result in evidence["edge_cases"].items():
        checks.append(
            _limit_check(
                f"robustness:edge:{kind}",
                "robustness",
                float(result["failed"]),
                0.0,
                "<=",
                f"{kind.replace('_', ' ')}: {result['predicted']} of {result['rows']} rows "
                "predicted; rows without a prediction",
            )
        )
    for column, result in evidence["counterfactual"].items():
        name = f"robustness:counterfactual:{column}"
        if not result["used_as_feature"]:
            checks.append(
                GateCheck(
                    name,
                    0.0,
                    spec.max_counterfactual_flip_rate,
                    "<=",
                    True,
                    f"{column} is not a model input: changing it cannot change a prediction",
                    "robustness",
                    evidence=EVIDENCE["robustness"],
                )
            )
            continue
        measured = (
            f"share of predictions changed by changing only {column}"
            if classification
            else "mean absolute change of predictions, in target standard deviations, when "
            f"only {column} changes"
        )
        checks.append(
            _limit_check(
                name,
                "robustness",
                result["change_rate"],
                spec.max_counterfactual_flip_rate,
                "<=",
                measured,
            )
        )
    return checks


def budget_checks(evidence: dict[str, Any], config: PipelineConfig) -> list[GateCheck]:
    spec = config.gate.budgets
    return [
        _limit_check(
            "budget:latency_ms_per_1000",
            "budgets",
            evidence["latency_ms_per_1000"],
            spec.max_latency_ms_per_1000,
            "<=",
            "prediction latency per 1,000 rows (ms)",
        ),
        _limit_check(
            "budget:model_mb",
            "budgets",
            evidence["model_mb"],
            spec.max_model_mb,
            "<=",
            "model file size (MB)",
        ),
    ]


def decide(
    checks: list[GateCheck], config: PipelineConfig, champion_version: int | None = None
) -> GateDecision:
    """promote, reject, or needs_approval, from the judged checks and the approval policy."""
    approval = config.gate.approval
    failed_kinds = {c.kind for c in checks if c.failed}
    if approval.mode == "never":
        outcome: Outcome = "reject" if failed_kinds else "promote"
    elif approval.mode == "required":
        outcome = "reject" if failed_kinds else "needs_approval"
    elif not failed_kinds:
        outcome = "promote"
    else:
        overrulable = failed_kinds <= set(approval.borderline)
        outcome = "needs_approval" if overrulable else "reject"
    return GateDecision(outcome, list(checks), champion_version)


def with_approval(
    decision: GateDecision,
    *,
    approved: bool,
    reviewer: str,
    comment: str,
    at: str,
    timed_out: bool = False,
    timeout_seconds: int | None = None,
) -> GateDecision:
    """The final decision once a reviewer answered (or did not, which rejects)."""
    if decision.outcome != "needs_approval":
        raise ValueError(f"decision is {decision.outcome!r}, not waiting for approval")
    record = {
        "approved": approved and not timed_out,
        "reviewer": reviewer,
        "comment": comment,
        "at": at,
        "timed_out": timed_out,
        "timeout_seconds": timeout_seconds,
    }
    outcome: Outcome = "promote" if record["approved"] else "reject"
    return replace(decision, outcome=outcome, approval=record)


def fidelity_evidence(student: Outputs, teacher: Outputs, config: PipelineConfig) -> dict[str, Any]:
    """How closely a distilled student reproduces its teacher on the holdout rows: the share
    of identical labels (and the largest probability gap) for classifiers, the R^2 of the
    student's predictions against the teacher's for regressors."""
    rows = len(student.pred)
    if config.task.is_classification:
        same = np.asarray(student.pred) == np.asarray(teacher.pred)
        gap = (
            float(np.max(np.abs(student.proba - teacher.proba)))
            if student.proba is not None and teacher.proba is not None and rows
            else None
        )
        return {
            "measure": "label agreement",
            "value": float(same.mean()) if rows else math.nan,
            "rows": rows,
            "max_proba_difference": gap,
        }
    s, t = np.asarray(student.pred, float), np.asarray(teacher.pred, float)
    spread = float(np.sum((t - t.mean()) ** 2)) if rows else 0.0
    r2 = 1.0 - float(np.sum((s - t) ** 2)) / spread if spread > 0 else math.nan
    return {"measure": "R^2 against the teacher", "value": r2, "rows": rows}


def fidelity_check(evidence: dict[str, Any], config: PipelineConfig) -> GateCheck:
    limit = config.model.distillation.min_fidelity
    what = f"{evidence['measure']} with the teacher on {evidence['rows']} holdout rows"
    return _limit_check("fidelity", "fidelity", evidence["value"], limit, ">=", what)
