"""The model card: Markdown rendered only from recorded facts.

`card_facts` gathers what a training run measured and decided (saved as `card.json` in the
run folder); `render_card` turns those facts, plus what the registry recorded since (version
number, status, audit entries such as approvals, promotions, rollbacks and retirement), into
Markdown. Nothing here measures anything: a card can always be regenerated from the record.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from modelcycle.config import PipelineConfig
from modelcycle.errors import ArtifactStoreError
from modelcycle.registry import open_run

if TYPE_CHECKING:
    from modelcycle.registry import AuditEntry, ModelVersion


def card_facts(
    *,
    config: PipelineConfig,
    run_id: str,
    lineage: dict[str, Any],
    fingerprints: dict[str, str],
    rows: dict[str, int],
    mode: str,
    best_params: dict[str, Any],
    metrics: dict[str, float],
    intervals: dict[str, dict[str, float]],
    comparison: dict[str, Any] | None,
    non_inferiority: dict[str, Any] | None,
    slices: list[dict[str, Any]],
    fairness: dict[str, Any],
    fairness_unweighted: dict[str, Any] | None,
    robustness: dict[str, Any],
    budgets: dict[str, Any],
    importance: list[dict[str, Any]],
    gate: dict[str, Any],
    cleaning: dict[str, Any] | None = None,
    distillation: dict[str, Any] | None = None,
    compiled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "model": config.name,
        "run_id": run_id,
        "owner": config.owner,
        "description": config.description,
        "intended_use": config.intended_use,
        "limitations": list(config.limitations),
        "task": config.task.value,
        "target": config.target,
        "features": {
            "numeric": config.features.numeric,
            "categorical": config.features.categorical,
        },
        "sensitive_columns": list(config.sensitive_columns),
        "data": {
            "source": lineage.get("data_source"),
            "time_range": (config.data.time_range.model_dump() if config.data.time_range else None),
            "period": config.data.time_range.describe() if config.data.time_range else None,
            "fingerprints": fingerprints,
            "rows": rows,
            "cleaning": cleaning,
        },
        "training": {
            "mode": mode,
            "estimator": distillation["student"] if distillation else config.model.estimator,
            "params": best_params,
            # A student is fitted on its teacher's outputs, without balancing weights of its own.
            "balance": config.model.balance.model_dump()
            if not distillation
            else {"classes": False, "sensitive_groups": False},
        },
        "primary_metric": config.evaluation.primary_metric,
        "confidence": config.gate.non_inferiority.confidence,
        "metrics": {
            m: {"value": v, **intervals.get(m, {"low": None, "high": None})}
            for m, v in metrics.items()
        },
        "comparison": comparison,
        "non_inferiority": non_inferiority,
        "slices": slices,
        "fairness": fairness,
        "fairness_unweighted": fairness_unweighted,
        "robustness": robustness,
        "budgets": budgets,
        "importance": importance,
        "gate": gate,
        "distillation": distillation,
        "compiled": compiled,
        "lineage": {
            "parent_version": lineage.get("parent_version"),
            "relation": lineage.get("relation"),
            "code_version": lineage.get("code_version"),
            "config_hash": lineage.get("config_hash"),
            "flow_run_id": run_id,
        },
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _period(data: dict[str, Any]) -> str:
    """Cards written before periods were described show the recorded mapping."""
    if data.get("period"):
        return str(data["period"])
    return "all rows" if data.get("time_range") is None else str(data["time_range"])


def cleaning_lines(cleaning: dict[str, Any] | None) -> list[str]:
    """What cleaning removed and which clock the periods were read on, as Markdown bullets."""
    if not cleaning:
        return []
    on = cleaning.get("duplicates_on")
    if on is None:
        duplicates = "duplicates kept (cleaning.drop_duplicates is off)"
    else:
        key = f"on {', '.join(on)}" if on else "on every column of the file"
        duplicates = f"{cleaning['dropped_duplicates']} duplicate rows dropped ({key})"
    lines = [
        f"- cleaning: {cleaning['rows_in']} rows in, {cleaning['rows_out']} kept; "
        f"{cleaning['dropped_missing_target']} without a target and "
        f"{cleaning['dropped_invalid']} with invalid values dropped; {duplicates}"
    ]
    time = cleaning.get("time")
    if time:
        zone = time.get("time_zone") or "no time zone (compared as written)"
        zone_text = f", {zone}" if time["kind"] == "timestamps" else ""
        lines.append(
            f"- time column `{time['column']}` ({time['kind']}{zone_text}): "
            f"{_moment(time['first'])} to {_moment(time['last'])}"
        )
    return lines


def _moment(value: Any) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def gate_table(gate: dict[str, Any]) -> list[str]:
    rows = []
    for c in gate["checks"]:
        limit = f"{c['comparison']} {c['limit']:g}" if c.get("limit") is not None else "-"
        if not c.get("judged", True):
            result = "not judged"
        else:
            result = "pass" if c["passed"] else "**FAIL**"
        rows.append([c["name"], _fmt(c["value"]), limit, result, c.get("evidence") or "-"])
    return _table(["check", "value", "limit", "result", "evidence"], rows)


def gate_report(model: str, run_id: str, gate: dict[str, Any]) -> str:
    """The Prefect artifact a reviewer reads before approving: every check and the outcome."""
    champion = gate.get("champion_version")
    against = f"champion v{champion}" if champion is not None else "no champion (first version)"
    lines = [
        f"# Gate report: {model} (run {run_id})",
        "",
        f"Decision: **{gate['decision']}**; compared against {against}.",
        "",
        *[f"- {r}" for r in gate["reasons"]],
        "",
        *gate_table(gate),
    ]
    return "\n".join(lines)


def _fairness_rows(evidence: dict[str, Any], label: str) -> list[list[Any]]:
    rows = []
    for column, report in evidence.items():
        for key in ("selection_rate_gap", "selection_rate_ratio", "tpr_gap", "mean_error_gap"):
            if key in report:
                rows.append([label, column, key, report[key], report["judged_groups"]])
    return rows


def _fairness_groups(evidence: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for column, report in evidence.items():
        for g in report["groups"]:
            if "selection_rate" in g:
                rates = ", ".join(f"{k}: {_fmt(v, 3)}" for k, v in g["selection_rate"].items())
                tprs = ", ".join(f"{k}: {_fmt(v, 3)}" for k, v in g["true_positive_rate"].items())
            else:
                rates, tprs = _fmt(g["mean_error"]), _fmt(g["mean_absolute_error"])
            rows.append(
                [column, g["group"], g["rows"], "yes" if g["judged"] else "no", rates, tprs]
            )
    return rows


def _approvals(gate: dict[str, Any], audit: list[dict[str, Any]]) -> list[str]:
    lines = []
    approval = gate.get("approval")
    if approval:
        if approval.get("timed_out"):
            lines.append(f"- no answer within {approval['timeout_seconds']} s: rejected")
        else:
            verdict = "approved" if approval["approved"] else "rejected"
            lines.append(
                f"- {verdict} by **{approval['reviewer']}** at {approval['at']}"
                + (f": {approval['comment']}" if approval.get("comment") else "")
            )
    for entry in audit:
        if entry["action"] in ("approve", "disapprove", "approval-timeout"):
            lines.append(
                f"- audit #{entry['id']} {entry['action']} by {entry['actor']}: {entry['reason']}"
            )
    return lines or ["- none required by the policy"]


def render_card(facts: dict[str, Any], registry: dict[str, Any] | None = None) -> str:
    """Markdown for one version. `registry` (version, status, aliases, audit) is optional:
    the card written at training time has no version number yet, the CLI's card has."""
    version = registry.get("version") if registry else None
    title = f"{facts['model']} v{version}" if version is not None else facts["model"]
    gate = facts["gate"]
    primary = facts["primary_metric"]
    pct = f"{facts['confidence']:.0%}"
    lines = [f"# Model card: {title}", ""]
    if registry:
        aliases = ", ".join(registry.get("aliases") or []) or "none"
        lines += [f"Status: **{registry['status']}** (aliases: {aliases}).", ""]
    else:
        lines += [
            f"Run `{facts['run_id']}`; the registry assigns the version number "
            "(`modelcycle models card NAME VERSION` shows it with the later history).",
            "",
        ]
    lines += [
        "## Purpose",
        facts["description"],
        "",
        f"- **Intended use:** {facts['intended_use']}",
        f"- **Owner:** {facts['owner']}",
        f"- **Task:** {facts['task']}, target `{facts['target']}`",
        "",
        "## Data",
        f"- source: `{facts['data']['source']}`; time range: {_period(facts['data'])}",
        *cleaning_lines(facts["data"].get("cleaning")),
        f"- rows: training {facts['data']['rows']['train']}, holdout "
        f"{facts['data']['rows']['holdout']}",
        f"- fingerprints: training `{facts['data']['fingerprints']['train']}`, holdout "
        f"`{facts['data']['fingerprints']['holdout']}`",
        "",
        "## Features",
        f"- numeric: {', '.join(facts['features']['numeric']) or 'none'}",
        f"- categorical: {', '.join(facts['features']['categorical']) or 'none'}",
        f"- sensitive (evaluated, {'' if _sensitive_used(facts) else 'not '}model inputs): "
        f"{', '.join(facts['sensitive_columns']) or 'none'}",
        "",
        "## Training",
        f"- mode {facts['training']['mode']}, estimator `{facts['training']['estimator']}`",
        f"- parameters: `{facts['training']['params']}`",
        f"- balancing of rare groups: {_balance_text(facts['training']['balance'])}",
        "",
        *distillation_lines(facts.get("distillation"), facts["lineage"]),
        f"## Metrics on the holdout ({pct} bootstrap intervals)",
        *_table(
            ["metric", "value", "low", "high"],
            [[m, v["value"], v["low"], v["high"]] for m, v in facts["metrics"].items()],
        ),
    ]
    ni = facts.get("non_inferiority")
    if ni:
        lines += [
            f"Against the champion on the same {ni['rows']} rows: {primary} difference "
            f"{_fmt(ni['difference'])}, {pct} paired-bootstrap interval "
            f"[{_fmt(ni['low'])}, {_fmt(ni['high'])}] ({ni['resamples']} resamples, seed "
            f"{ni['seed']}).",
            "",
        ]
    else:
        lines += ["No champion when this version was trained: nothing to compare with.", ""]
    lines += [
        "## Slices",
        *_table(
            ["column", "value", "rows", primary, "judged"],
            [
                [s["column"], s["value"], s["rows"], s.get(primary), _slice_judged(s, primary)]
                for s in facts["slices"]
            ],
        ),
        "## Fairness",
        *_degenerate_lines(gate),
        *_table(
            ["model", "column", "measure", "value", "groups judged"],
            _fairness_rows(facts["fairness"], "this version")
            + (
                _fairness_rows(facts["fairness_unweighted"], "same fit without balancing")
                if facts.get("fairness_unweighted")
                else []
            ),
        ),
    ]
    if facts.get("fairness_unweighted"):
        lines += [
            "The comparison row comes from a second fit on the same data and parameters "
            "without the balancing weights, made only for this comparison.",
            "",
        ]
    lines += [
        *_table(
            ["column", "group", "rows", "judged", "selection rate / mean error", "TPR / MAE"],
            _fairness_groups(facts["fairness"]),
        ),
        "## Robustness",
        *_robustness_lines(facts["robustness"]),
        *compiled_lines(facts.get("compiled")),
        "## Budgets",
        f"- prediction latency: {_fmt(facts['budgets']['latency_ms_per_1000'], 1)} ms per "
        "1,000 rows (median of 3)",
        f"- model file: {_fmt(facts['budgets']['model_mb'], 3)} MB",
        "",
        "## Explainability (permutation importance on the holdout)",
        *_table(
            ["feature", "mean drop", "std"],
            [
                [r["feature"], r["importance_mean"], r["importance_std"]]
                for r in facts["importance"]
            ],
        ),
        "## Gate decision",
        f"**{gate['decision']}**: " + "; ".join(gate["reasons"]),
        "",
        *gate_table(gate),
        "## Approvals",
        *_approvals(gate, registry.get("audit", []) if registry else []),
        "",
        "## Lineage",
        f"- parent version: {facts['lineage']['parent_version'] or 'none'}",
        f"- code version: `{facts['lineage']['code_version']}`",
        f"- config hash: `{facts['lineage']['config_hash']}`",
        f"- flow run: `{facts['lineage']['flow_run_id']}`",
        "",
        "## Limitations",
        *([f"- {item}" for item in facts["limitations"]] or ["- none stated in the config"]),
        "",
    ]
    lines += _deprecation(registry)
    if registry and registry.get("audit"):
        lines += [
            "## History (audit log)",
            *_table(
                ["#", "at", "actor", "action", "version", "reason"],
                [
                    [e["id"], e["at"], e["actor"], e["action"], e["version"], e["reason"]]
                    for e in registry["audit"]
                ],
            ),
        ]
    return "\n".join(lines)


def _deprecation(registry: dict[str, Any] | None) -> list[str]:
    """The latest deprecation notice of this version, as its pinned route announces it."""
    notices = [
        e
        for e in (registry or {}).get("audit", [])
        if e["action"] == "deprecate" and e["version"] == registry["version"]
    ]
    if not notices:
        return []
    details = notices[-1]["details"]
    successor = details.get("successor")
    return [
        "## Deprecation",
        f"- sunset: {details.get('sunset')} (its pinned route answers 410 from then on)",
        f"- successor: {f'version {successor}' if successor else 'none named'}",
        f"- reason: {notices[-1]['reason']}",
        "",
    ]


def _slice_judged(s: dict[str, Any], metric: str) -> str:
    if not s["enough_rows"]:
        return "no (too few rows)"
    undefined = (s.get("undefined") or {}).get(metric)
    return f"no (undefined: {undefined})" if undefined else "yes"


def _degenerate_lines(gate: dict[str, Any]) -> list[str]:
    """A model that answers one class for almost every row makes every group gap look small."""
    failed = [
        c for c in gate["checks"] if c["name"] == "degenerate_predictions" and c.get("judged", True)
    ]
    if not failed or failed[0]["passed"]:
        return []
    return [
        f"**Not meaningful:** the model is degenerate ({failed[0]['detail']}), so the fairness "
        "figures below are reported, not judged.",
        "",
    ]


def _sensitive_used(facts: dict[str, Any]) -> bool:
    features = set(facts["features"]["numeric"]) | set(facts["features"]["categorical"])
    return bool(features & set(facts["sensitive_columns"]))


def _balance_text(balance: dict[str, Any]) -> str:
    on = [k.replace("_", " ") for k, v in balance.items() if v]
    return "weights balance " + " and ".join(on) if on else "off"


def _robustness_lines(evidence: dict[str, Any]) -> list[str]:
    noise = evidence["noise"]
    lines = [
        f"- {noise['measure']} under noise of {noise['scale_in_std']} std on numeric "
        f"features: {_fmt(noise['value'])} ({evidence['rows']} rows)",
    ]
    for kind, r in evidence["edge_cases"].items():
        lines.append(f"- {kind.replace('_', ' ')}: {r['predicted']} of {r['rows']} rows predicted")
    for column, r in evidence["counterfactual"].items():
        if r["used_as_feature"] and r.get("measure") == "mean_change_in_target_std":
            lines.append(
                f"- changing only {column}: predictions move by {_fmt(r['change_rate'])} target "
                "standard deviations on average"
            )
        elif r["used_as_feature"]:
            lines.append(
                f"- changing only {column}: {_fmt(r['change_rate'])} of predictions change"
            )
        else:
            lines.append(f"- {column} is not a model input: counterfactual change 0")
    return [*lines, ""]


def registry_view(version: ModelVersion, audit: list[AuditEntry]) -> dict[str, Any]:
    """What the registry adds to a card: number, status, aliases and this version's history
    (entries about it, and the promotions or rollbacks that replaced it as champion)."""
    return {
        "version": version.version,
        "status": str(version.status),
        "aliases": list(version.aliases),
        "audit": [
            {**e.to_dict(), "at": e.at.strftime("%Y-%m-%d %H:%M:%S UTC")}
            for e in audit
            if version.version in (e.version, e.details.get("previous"))
        ],
    }


def read_card_facts(version: ModelVersion) -> dict[str, Any]:
    """`card.json` from the version's run folder (a local path or an fsspec URL), checked
    against the run's manifest, and the manifest against the registry, so a card is never
    rendered from edited facts (nor from a manifest edited to vouch for them)."""
    folder = version.artifact_uri.rstrip("/")
    try:
        data = open_run(version).read("card.json")
    except ArtifactStoreError as exc:
        if not isinstance(exc.__cause__, FileNotFoundError):
            raise
        raise ArtifactStoreError(
            f"{folder}: no model card facts (version {version.version} was trained before "
            "model cards existed, or its run folder was moved)"
        ) from exc
    return json.loads(data)


def distillation_lines(distil: dict[str, Any] | None, lineage: dict[str, Any]) -> list[str]:
    """Student and teacher side by side: what distilling gained (size, latency) and lost
    (metrics, fidelity), all measured in the same run on the same holdout rows."""
    if not distil:
        return []
    student, teacher = distil["student_measures"], distil["teacher_measures"]
    fidelity = distil["fidelity"]
    rows = [
        ["model file (MB)", student["model_mb"], teacher["model_mb"]],
        [
            "latency (ms / 1,000 rows)",
            student["latency_ms_per_1000"],
            teacher["latency_ms_per_1000"],
        ],
        *[
            [metric, value, teacher["metrics"].get(metric)]
            for metric, value in student["metrics"].items()
        ],
    ]
    counts = distil["rows"]
    return [
        f"## Distilled from v{lineage.get('parent_version')}",
        f"- student `{distil['student']}` with `{distil['params']}`, trained on the teacher's "
        f"{distil['targets']} over {counts['train']} training rows and {counts['neighbours']} "
        "synthetic neighbours",
        f"- fidelity: {fidelity['measure']} {_fmt(fidelity['value'])} on {fidelity['rows']} "
        f"holdout rows (gate: at least {_fmt(distil['min_fidelity'])})",
        "",
        *_table(["measure", "student (this version)", "teacher"], rows),
    ]


def compiled_lines(compiled: dict[str, Any] | None) -> list[str]:
    """The compiled form: kept (with its runtime and parity per set of rows) or why not."""
    if not compiled:
        return []
    runtime = f"{compiled['runtime']} {compiled['runtime_version'] or '(not installed)'}"
    if not compiled["kept"]:
        return ["## Compiled form", f"- not kept ({runtime}): {compiled['reason']}", ""]
    rows = [
        [name, r.get("rows"), r.get("differing_labels"), _scientific(r.get("max_difference"))]
        for name, r in compiled["parity"].items()
    ]
    return [
        "## Compiled form",
        f"- `{compiled['file']}` ({runtime}), SHA-256 `{compiled['sha256']}`; served instead "
        "of the pipeline when its hash verifies",
        f"- parity with the pipeline (labels identical, largest difference at most "
        f"{compiled['tolerance']:g}):",
        "",
        *_table(["rows", "count", "differing labels", "largest difference"], rows),
    ]


def _scientific(value: float | None) -> str:
    """Parity differences are around 1e-16: fixed-point digits would show them as 0."""
    return "n/a" if value is None else f"{value:.1e}"
