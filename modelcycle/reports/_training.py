"""Human-readable summaries of a training run, built only from what was recorded."""

from __future__ import annotations

import math
from typing import Any

from modelcycle.reports._card import cleaning_lines, gate_table


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_rows(
    metrics: dict[str, float], comparison: dict[str, dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """One row per metric: the candidate, and the champion on the same rows when there is one."""
    rows = []
    for name, value in metrics.items():
        row: dict[str, Any] = {"metric": name, "candidate": _fmt(value)}
        if comparison is not None:
            row["champion"] = _fmt(comparison[name]["champion"])
            row["difference"] = _fmt(comparison[name]["difference"])
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def training_summary(
    *,
    model: str,
    version: int,
    status: str,
    mode: str,
    parent_version: int | None,
    metrics: dict[str, float],
    comparison: dict[str, dict[str, Any]] | None,
    gate: dict[str, Any],
    slices: list[dict[str, Any]],
    primary_metric: str,
    fingerprints: dict[str, str],
    rows: dict[str, int],
    run_uri: str,
    code_version: str,
    config_hash: str,
    cleaning: dict[str, Any] | None = None,
    period: str | None = None,
) -> str:
    champion_line = (
        f"compared with champion v{parent_version} on the same {rows['holdout']} holdout rows"
        if comparison is not None
        else "no champion yet: nothing to compare with"
    )
    slice_rows = [
        {
            "slice": f"{s['column']}={s['value']}",
            "rows": s["rows"],
            primary_metric: _fmt(s[primary_metric]) if s["enough_rows"] else "(too few rows)",
        }
        for s in slices
    ]
    return "\n".join(
        [
            f"# {model} v{version}: {status}",
            "",
            f"Training mode **{mode}**; {champion_line}.",
            f"Gate decision: **{gate['decision']}** ({'; '.join(gate['reasons'])}).",
            "",
            "## Metrics (holdout)",
            _table(metrics_rows(metrics, comparison)),
            "## Gate checks",
            *gate_table(gate),
            "## Slices",
            _table(slice_rows),
            "## Lineage",
            f"- run folder: `{run_uri}`",
            f"- training rows: {rows['train']}, holdout rows: {rows['holdout']}; time range: "
            f"{period or 'all rows'}",
            *cleaning_lines(cleaning),
            f"- data fingerprints: train `{fingerprints['train'][:16]}…`, "
            f"holdout `{fingerprints['holdout'][:16]}…`",
            f"- code version: `{code_version}`; config hash `{config_hash[:16]}…`",
            f"- parent version: {parent_version if parent_version is not None else 'none'}",
            "",
        ]
    )
