"""One event log over a period, and retention of the prediction log.

The export is JSON Lines, one event a line, oldest first, every line an object with `type`,
`time` (ISO 8601, UTC), `model` and `version` (null when the event concerns no version):

    prediction   id, role, request_id, latency_ms, flags, outputs   (never the inputs)
    feedback     id, label                                          (the true outcome)
    usage        date, predictions                                  (per model, version, day)
    audit        id, actor, action, reason, details, entry_hash     (the registry's audit log)
    incident     id, kind, severity, status, summary, occurrences   (opened, with its notes)
    monitoring   run_id, status, reasons, window                    (a monitoring decision)

Retention keeps prediction-log partitions (a day of predictions or feedback, compacted to
Parquet) for `MODELCYCLE_LOG_RETENTION_DAYS` days (default 183, six months); a partition is
removed only when its whole day is older than that, and the audit log records each removal
(partitions, rows) before it happens, so an interrupted removal is still on record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from modelcycle.artifacts import monitoring_store
from modelcycle.errors import ModelcycleError
from modelcycle.registry import Incident, Registry
from modelcycle.serving import compact, read_feedback, read_predictions

EVENT_TYPES = ("prediction", "feedback", "usage", "audit", "incident", "monitoring")
KINDS = ("predictions", "feedback")


def _iso(moment: Any) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).isoformat()
    return str(moment)


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | list | dict):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value != value:  # NaN
        return None
    return value


def _in(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or moment >= since) and (until is None or moment < until)


def export_events(
    registry: Registry,
    incidents: list[Incident],
    log_root: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event with `since <= time < until`, oldest first (see the module docstring)."""
    events: list[dict[str, Any]] = []
    models = [m.name for m in registry.list_models()]
    for model in models:
        predictions = read_predictions(log_root, model, since, until)
        for row in predictions.to_dict("records"):
            outputs = {
                k.removeprefix("output."): _plain(v)
                for k, v in row.items()
                if k.startswith("output.") and _plain(v) is not None
            }
            events.append(
                {
                    "type": "prediction",
                    "time": _iso(row["time"]),
                    "model": model,
                    "version": int(row["version"]),
                    "id": row["id"],
                    "role": row["role"],
                    "request_id": row["request_id"],
                    "latency_ms": _plain(row["latency_ms"]),
                    "flags": _plain(list(row["flags"])),
                    "outputs": outputs,
                }
            )
        if len(predictions):
            days = predictions.assign(day=predictions["time"].dt.date)
            for (version, day), count in days.groupby(["version", "day"]).size().items():
                events.append(
                    {
                        "type": "usage",
                        "time": datetime.combine(day, datetime.min.time(), UTC).isoformat(),
                        "model": model,
                        "version": int(version),
                        "date": day.isoformat(),
                        "predictions": int(count),
                    }
                )
        for row in read_feedback(log_root, model, since, until).to_dict("records"):
            events.append(
                {
                    "type": "feedback",
                    "time": _iso(row["time"]),
                    "model": model,
                    "version": None,
                    "id": row["id"],
                    "label": _plain(row["label"]),
                }
            )
        events += _monitoring_events(registry, model, since, until)
    for entry in registry.audit_log():
        if _in(entry.at, since, until):
            events.append(
                {
                    "type": "audit",
                    "time": _iso(entry.at),
                    "model": entry.model_name,
                    "version": entry.version,
                    "id": entry.id,
                    "actor": entry.actor,
                    "action": entry.action,
                    "reason": entry.reason,
                    "details": entry.details,
                    "entry_hash": entry.entry_hash,
                }
            )
    for incident in incidents:
        if _in(incident.opened_at, since, until):
            events.append(
                {
                    "type": "incident",
                    "time": _iso(incident.opened_at),
                    "model": incident.model_name,
                    "version": incident.version,
                    "id": incident.id,
                    "kind": incident.kind,
                    "severity": str(incident.severity),
                    "status": str(incident.status),
                    "summary": incident.summary,
                    "occurrences": incident.occurrences,
                    "notes": [
                        n.to_dict() if hasattr(n, "to_dict") else str(n) for n in incident.notes
                    ],
                }
            )
    events.sort(key=lambda e: (e["time"], EVENT_TYPES.index(e["type"])))
    yield from events


def _monitoring_events(
    registry: Registry, model: str, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    versions = registry.list_versions(model)
    if not versions:
        return []
    store = monitoring_store(versions[-1].artifact_uri)
    found = []
    for run_id in store.list_runs(model):
        try:
            manifest = store.read_manifest(model, run_id)
        except ModelcycleError:
            continue
        if manifest.get("kind") != "monitoring":
            continue
        created = datetime.fromisoformat(str(manifest.get("created_at")))
        if not _in(created, since, until):
            continue
        try:
            decision = json.loads(store.read_verified(model, run_id, "decision.json", manifest))
            window = json.loads(store.read_verified(model, run_id, "window.json", manifest))
        except ModelcycleError:
            decision, window = {"status": manifest.get("status"), "reasons": []}, None
        found.append(
            {
                "type": "monitoring",
                "time": _iso(created),
                "model": model,
                "version": manifest.get("monitored_version"),
                "run_id": run_id,
                "status": decision.get("status"),
                "reasons": decision.get("reasons", []),
                "window": window,
            }
        )
    return found


# -- retention -----------------------------------------------------------------------------


@dataclass
class RetentionReport:
    model: str
    cutoff: str
    removed: list[str] = field(default_factory=list)
    rows: int = 0
    kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "cutoff": self.cutoff,
            "removed": self.removed,
            "rows": self.rows,
            "kept_partitions": self.kept,
        }


def _partitions(log_root: str, model: str) -> Iterator[tuple[str, date, str]]:
    fs, base = url_to_fs(log_root)
    for kind in KINDS:
        folder = f"{base.rstrip('/')}/{model}/{kind}"
        if not fs.isdir(folder):
            continue
        for entry in sorted(fs.ls(folder, detail=False)):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("date="):
                try:
                    yield kind, date.fromisoformat(name[5:]), entry
                except ValueError:
                    continue


def apply_retention(
    registry: Registry,
    log_root: str,
    model: str,
    days: int,
    *,
    actor: str,
    now: datetime | None = None,
) -> RetentionReport:
    """Compact what is sealed, then remove the day partitions wholly older than `days`; the
    audit entry naming them is written first. A partition of a day that straddles the cutoff
    is kept whole: retention never removes a record younger than `days`."""
    if days < 1:
        raise ModelcycleError(f"retention: expected at least 1 day, got {days}")
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=days)).date()  # days strictly before this one go
    compact(log_root, model)
    fs, _ = url_to_fs(log_root)
    report = RetentionReport(model, cutoff.isoformat())
    doomed = []
    for _kind, day, folder in _partitions(log_root, model):
        if day < cutoff:
            doomed.append(folder)
            for part in fs.ls(folder, detail=False):
                if part.endswith(".parquet"):
                    report.rows += pq.ParquetFile(fs.open(part, "rb")).metadata.num_rows
        else:
            report.kept += 1
    report.removed = doomed
    if not doomed:
        return report
    registry.append_audit(
        actor=actor,
        action="retention",
        model_name=model,
        reason=(
            f"prediction log retention ({days} days): removing {len(doomed)} day partitions "
            f"before {cutoff.isoformat()}, {report.rows} records"
        ),
        details={
            "days": days,
            "cutoff": cutoff.isoformat(),
            "partitions": doomed,
            "rows": report.rows,
        },
    )
    for folder in doomed:
        fs.rm(folder, recursive=True)
    return report
