"""The deployment gate: each check states its value, its limit and whether it passed.

A decision is only ever made from recorded checks, so the registry and the UI can show why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from modelcycle.config import PipelineConfig, higher_is_better


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float | None
    limit: float
    comparison: str  # ">=" or "<="
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        failed = [c.detail for c in self.checks if not c.passed]
        return failed or ["every check passed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": "promote" if self.passed else "reject",
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [c.to_dict() for c in self.checks],
        }


def floor_check(metric: str, value: float, limit: float) -> GateCheck:
    """A floor for higher-is-better metrics, a ceiling for the others; an undefined value fails."""
    higher = higher_is_better(metric)
    comparison = ">=" if higher else "<="
    defined = value is not None and math.isfinite(value)
    passed = defined and (value >= limit if higher else value <= limit)
    shown = f"{value:.4f}" if defined else "undefined"
    verdict = "meets" if passed else "fails"
    return GateCheck(
        name=f"floor:{metric}",
        value=value if defined else None,
        limit=limit,
        comparison=comparison,
        passed=passed,
        detail=f"{metric} {shown} {verdict} the limit {comparison} {limit}",
    )


def decide(metrics: dict[str, float], config: PipelineConfig) -> GateDecision:
    checks = [floor_check(m, metrics[m], limit) for m, limit in config.gate.floors.items()]
    return GateDecision(passed=all(c.passed for c in checks), checks=checks)
