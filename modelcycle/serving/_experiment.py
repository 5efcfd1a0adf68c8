"""One look at an online experiment: the logged traffic and feedback of champion and
challenger, the sequential test on the primary metric, the guardrails, and the decision.

Pure given the two log frames, so the decision rules are tested without a service; the
`experiment` flow reads the log, calls `analyse`, and records what it returns.

Rows compared: the champion's answers (role `champion`, the experiment's champion version)
and the challenger's (role `shadow` or `canary`) logged since the experiment started. Shadow
rows carry the champion row's id plus `.shadow`, so both versions are scored on the same
requests with the same feedback and the test is paired; canary rows are other requests, and
the test compares two independent samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelcycle.config import Experiment as ExperimentConfig
from modelcycle.config import ExperimentMetric, TaskType
from modelcycle.evaluation import SequentialBound, two_sample_bound
from modelcycle.registry import Experiment, ExperimentMode
from modelcycle.serving._routing import ERROR_FLAG, SHADOW_SUFFIX

Outcome = Literal["promote", "stop", "continue"]
_HIGHER_IS_BETTER = {
    "accuracy": True,
    "brier": False,
    "log_loss": False,
    "absolute_error": False,
    "squared_error": False,
}
_EPS = 1e-15


@dataclass(frozen=True)
class Guardrail:
    name: str
    value: float | None  # None: not judged yet (too few rows)
    limit: float
    breached: bool

    def to_dict(self) -> dict[str, Any]:
        return {"value": _finite(self.value), "limit": self.limit, "breached": self.breached}


@dataclass(frozen=True)
class Analysis:
    """What one look found, and what it decides."""

    outcome: Outcome
    reason: str
    metric: str
    bound: SequentialBound
    guardrails: list[Guardrail]
    look: int
    rows: dict[str, int]

    @property
    def summary(self) -> str:
        b = self.bound
        interval = (
            f"[{b.low:+.4f}, {b.high:+.4f}]" if math.isfinite(b.low) else "(not yet: too few rows)"
        )
        return (
            f"look {self.look}: {self.outcome} - {self.reason}; {self.metric} challenger "
            f"{_fmt(b.challenger_mean)} vs champion {_fmt(b.champion_mean)}, difference "
            f"{_fmt(b.difference, '+.4f')}, {1 - b.alpha:.0%} anytime-valid interval {interval}"
        )

    def evidence(self) -> dict[str, Any]:
        """JSON-ready (no infinities): what the audit entry and the artifact show."""
        b = self.bound
        return {
            "outcome": self.outcome,
            "summary": self.summary,
            "reason": self.reason,
            "metric": self.metric,
            "look": self.look,
            "interval": [_finite(b.low), _finite(b.high)],
            "difference": _finite(b.difference),
            "champion_mean": _finite(b.champion_mean),
            "challenger_mean": _finite(b.challenger_mean),
            "log_likelihood_ratio": _finite(b.log_likelihood_ratio),
            "alpha": b.alpha,
            "paired": b.paired,
            "rows": self.rows,
            "guardrails": {g.name: g.to_dict() for g in self.guardrails},
        }


def analyse(
    experiment: Experiment,
    settings: ExperimentConfig,
    task: TaskType,
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
) -> Analysis:
    """Decide one look (the experiment's `looks + 1`) from the log as it stands."""
    look = experiment.looks + 1
    metric = settings.resolved_metric(task)
    rows = _since(predictions, experiment)
    champion = rows[(rows["role"] == "champion") & (rows["version"] == experiment.champion)]
    role = "shadow" if experiment.mode is ExperimentMode.SHADOW else "canary"
    challenger_all = rows[(rows["role"] == role) & (rows["version"] == experiment.challenger)]
    failed = np.array(
        [f is not None and ERROR_FLAG in list(f) for f in challenger_all["flags"]], dtype=bool
    )
    challenger = challenger_all.loc[~failed]
    labels = _labels(feedback)
    if experiment.paired:
        a, b = _paired_values(champion, challenger, labels, metric)
    else:
        a = _dropna(_metric_values(champion, champion["id"], labels, metric))
        b = _dropna(_metric_values(challenger, challenger["id"], labels, metric))
    bound = two_sample_bound(
        a,
        b,
        alpha=settings.alpha,
        effect_sd=settings.effect_sd,
        min_rows=settings.min_rows,
        higher_is_better=_HIGHER_IS_BETTER[metric],
        paired=experiment.paired,
    )
    guardrails = _guardrails(
        settings, task, champion, challenger, len(challenger_all), int(failed.sum())
    )
    counts = {
        "champion": len(champion),
        "challenger": len(challenger_all),
        "challenger_errors": int(failed.sum()),
        "champion_with_feedback": len(a),
        "challenger_with_feedback": len(b),
    }
    outcome, reason = _decide(bound, guardrails, look, settings.max_looks)
    return Analysis(outcome, reason, metric, bound, guardrails, look, counts)


def _decide(
    bound: SequentialBound, guardrails: list[Guardrail], look: int, max_looks: int
) -> tuple[Outcome, str]:
    breached = [g for g in guardrails if g.breached]
    if breached:
        names = ", ".join(f"{g.name} {g.value:.4g} > {g.limit:g}" for g in breached)
        return "stop", f"guardrail breached: {names}"
    if bound.decision == "challenger_better":
        return "promote", "the challenger is better, and the interval excludes no difference"
    if bound.decision == "champion_better":
        return "stop", "the champion is better, and the interval excludes no difference"
    if look >= max_looks:
        return "stop", f"no decision after {look} looks (max_looks); the champion stays"
    if not math.isfinite(bound.low):
        return "continue", (
            f"waiting for enough rows with feedback (champion {bound.champion_rows}, "
            f"challenger {bound.challenger_rows})"
        )
    return "continue", "the interval still contains no difference"


# -- rows and metrics ------------------------------------------------------------------------


_BASE = ("id", "time", "version", "role", "latency_ms", "flags", "output.label")


def _since(predictions: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    """Rows logged since the experiment started; an empty log still has the columns read."""
    if predictions.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in _BASE})
    times = pd.to_datetime(predictions["time"], utc=True)
    return predictions[times >= pd.Timestamp(experiment.started_at)]


def _labels(feedback: pd.DataFrame) -> dict[str, Any]:
    if feedback.empty or "id" not in feedback:
        return {}
    return dict(zip(feedback["id"], feedback["label"], strict=True))


def _paired_values(
    champion: pd.DataFrame, shadow: pd.DataFrame, labels: dict[str, Any], metric: ExperimentMetric
) -> tuple[np.ndarray, np.ndarray]:
    """Both versions' metric on the requests both answered and that have feedback."""
    keys = shadow["id"].str.removesuffix(SHADOW_SUFFIX)
    shadow = shadow.assign(_key=keys.to_numpy())
    both = champion.merge(shadow, left_on="id", right_on="_key", suffixes=("", "__shadow"))
    a = _metric_values(both, both["id"], labels, metric)
    shadow_view = both[[c for c in both.columns if c.endswith("__shadow")]]
    shadow_view.columns = [c.removesuffix("__shadow") for c in shadow_view.columns]
    b = _metric_values(shadow_view, both["id"], labels, metric)
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _metric_values(
    rows: pd.DataFrame, ids: pd.Series, labels: dict[str, Any], metric: ExperimentMetric
) -> np.ndarray:
    """Per-row metric where feedback arrived, NaN elsewhere (in place, so paired arms drop
    the same rows)."""
    truth = [labels.get(i) for i in ids]
    values = np.full(len(rows), np.nan)
    predicted = rows["output.label"].tolist() if "output.label" in rows else [None] * len(rows)
    for index, (label, guess) in enumerate(zip(truth, predicted, strict=True)):
        if label is None or guess is None or _missing(label):
            continue
        if metric == "accuracy":
            values[index] = float(str(guess) == str(label))
        elif metric in ("absolute_error", "squared_error"):
            error = float(guess) - float(label)
            values[index] = abs(error) if metric == "absolute_error" else error * error
        else:
            values[index] = _probability_metric(rows.iloc[index], label, metric)
    return values


def _probability_metric(row: pd.Series, label: Any, metric: ExperimentMetric) -> float:
    prefix = "output.probabilities."
    probabilities = {
        k.removeprefix(prefix): float(v)
        for k, v in row.items()
        if isinstance(k, str) and k.startswith(prefix) and not _missing(v)
    }
    if not probabilities:
        return math.nan
    if metric == "log_loss":
        return -math.log(max(probabilities.get(str(label), 0.0), _EPS))
    return sum((p - float(k == str(label))) ** 2 for k, p in probabilities.items())


# -- guardrails ------------------------------------------------------------------------------


def _guardrails(
    settings: ExperimentConfig,
    task: TaskType,
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    attempted: int,
    failed: int,
) -> list[Guardrail]:
    limits = settings.guardrails
    judged = attempted >= limits.min_rows and len(champion) >= limits.min_rows
    latency = error_rate = shift = None
    if judged:
        error_rate = failed / attempted
        if len(challenger) and len(champion):
            p99_a = float(np.percentile(champion["latency_ms"].astype(float), 99))
            p99_b = float(np.percentile(challenger["latency_ms"].astype(float), 99))
            latency = p99_b / max(p99_a, 1e-6)
            shift = _prediction_shift(task, champion, challenger)
    return [
        _guard("latency_p99_ratio", latency, limits.max_latency_p99_ratio),
        _guard("error_rate", error_rate, limits.max_error_rate),
        _guard("prediction_shift", shift, limits.max_prediction_shift),
    ]


def _guard(name: str, value: float | None, limit: float) -> Guardrail:
    return Guardrail(name, value, limit, value is not None and value > limit)


def _prediction_shift(task: TaskType, a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Total variation between predicted-label shares, or the two-sample KS statistic."""
    if task.is_classification:
        share_a = a["output.label"].astype(str).value_counts(normalize=True)
        share_b = b["output.label"].astype(str).value_counts(normalize=True)
        joined = pd.concat([share_a, share_b], axis=1).fillna(0.0)
        return float(0.5 * (joined.iloc[:, 0] - joined.iloc[:, 1]).abs().sum())
    x = np.sort(a["output.label"].astype(float).to_numpy())
    y = np.sort(b["output.label"].astype(float).to_numpy())
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / len(x)
    cdf_y = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.abs(cdf_x - cdf_y).max())


def _dropna(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _fmt(value: float, spec: str = ".4f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)
