"""Erasure of one data subject from the prediction log (GDPR Article 17).

Only a column the model's config declares as a subject key can be erased by. The log is first
compacted (sealed segments become Parquet), then every Parquet part holding that person's
predictions is rewritten without them (a new file under a temporary name, fsynced, renamed
over the old one: a reader sees the old part or the new one, never half of one), and their
feedback goes the same way. The log is read again to verify nothing is left. A record still
in a segment a live service is writing cannot be rewritten safely; it is counted and the
erasure reports itself incomplete until the segment is sealed.

The audit entry is written before anything is removed and names the person only by a keyed
hash (HMAC-SHA256 with the state folder's privacy key), never by the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelcycle.errors import ModelcycleError
from modelcycle.logstore import (
    INPUT_PREFIX,
    Kind,
    LogLocation,
    compact,
    list_parts,
    locate,
    publish_parquet,
    read_feedback,
    read_predictions,
)
from modelcycle.registry import Registry, open_run
from modelcycle.utils import keyed_hash


@dataclass
class ErasureReport:
    model: str
    column: str
    subject: str  # the keyed hash, never the value
    predictions: int = 0
    feedback: int = 0
    parts: list[str] = field(default_factory=list)
    remaining: int = 0
    trained_on_log: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def complete(self) -> bool:
        return self.remaining == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "column": self.column,
            "subject": self.subject,
            "predictions": self.predictions,
            "feedback": self.feedback,
            "parts_rewritten": self.parts,
            "remaining": self.remaining,
            "complete": self.complete,
            "versions_trained_on_log": self.trained_on_log,
            "note": self.note,
        }


def declared_subject_keys(registry: Registry, model: str) -> set[str]:
    """Subject keys declared by any version's verified config."""
    keys: set[str] = set()
    for version in registry.list_versions(model):
        try:
            keys |= set(open_run(version).config.get("subject_keys") or [])
        except ModelcycleError:
            continue
    return keys


def _matches(table: pa.Table, column: str, forms: set[str]) -> pa.Array | None:
    name = INPUT_PREFIX + column
    if name not in table.column_names:
        return None
    values = pc.cast(table.column(name), pa.string(), safe=False)
    return pc.fill_null(pc.is_in(values, value_set=pa.array(sorted(forms))), False)


def _parts(location: LogLocation, model: str, kind: Kind) -> list[str]:
    return [path for path, _ in list_parts(location, model, kind)]


def erase_subject(
    registry: Registry,
    log_root: str,
    model: str,
    column: str,
    value: str,
    key: bytes,
    *,
    actor: str,
) -> ErasureReport:
    """Remove every logged prediction whose subject key `column` is `value` (as logged, or as
    its keyed hash when the log pseudonymises), and their feedback; audit, then verify."""
    declared = declared_subject_keys(registry, model)
    if column not in declared:
        listed = ", ".join(sorted(declared)) or "none"
        raise ModelcycleError(
            f"--where {column}=...: {column!r} is not a subject key of {model!r} "
            f"(declared in its config's subject_keys: {listed}); only declared subject keys "
            "can be erased by"
        )
    subject = keyed_hash(key, column, value)
    forms = {value, subject}
    report = ErasureReport(model, column, subject)
    compact(log_root, model)
    location = locate(log_root)

    # What will go, counted before anything is touched, and recorded first.
    plans: list[tuple[str, pa.Table]] = []
    erased_ids: set[str] = set()
    for path in _parts(location, model, "predictions"):
        table = pq.read_table(path, filesystem=location.fs)
        mask = _matches(table, column, forms)
        if mask is None or not pc.any(mask).as_py():
            continue
        erased_ids |= set(table.filter(mask).column("id").to_pylist())
        plans.append((path, table.filter(pc.invert(mask))))
        report.predictions += int(pc.sum(mask).as_py())
    if erased_ids:
        ids = pa.array(sorted(erased_ids))
        for path in _parts(location, model, "feedback"):
            table = pq.read_table(path, filesystem=location.fs)
            mask = pc.is_in(table.column("id"), value_set=ids)
            if pc.any(mask).as_py():
                plans.append((path, table.filter(pc.invert(mask))))
                report.feedback += int(pc.sum(mask).as_py())
    report.parts = [path for path, _ in plans]
    report.trained_on_log = _versions_trained_on_parts(registry, model, set(report.parts))
    listed = ", ".join(f"v{v}" for v in report.trained_on_log)
    report.note = (
        f"{listed} learned from prediction log parts that held this person's rows (by the "
        "parts each lineage records): retrain if they must forget them; they can no longer be "
        "reproduced, as those parts are rewritten"
        if report.trained_on_log
        else "no version of this model learned from a prediction log part that held this "
        "person's rows (by the parts each lineage records), so no retraining is needed"
    )
    if plans:
        registry.append_audit(
            actor=actor,
            action="erasure",
            model_name=model,
            reason=(
                f"erased {report.predictions} prediction records and {report.feedback} feedback "
                f"records of one data subject (subject key {column})"
            ),
            details={
                "column": column,
                "subject": subject,
                "predictions": report.predictions,
                "feedback": report.feedback,
                "parts": report.parts,
                "versions_trained_on_log": report.trained_on_log,
            },
        )
    for path, table in plans:
        publish_parquet(location.fs, path, table)

    # Verify from the log as any reader sees it (segments a live writer holds included).
    left = read_predictions(log_root, model)
    name = INPUT_PREFIX + column
    if name in left.columns:
        report.remaining = int(left[name].astype("string").isin(list(forms)).sum())
    feedback = read_feedback(log_root, model)
    report.remaining += int(feedback["id"].isin(list(erased_ids)).sum())
    return report


def _versions_trained_on_parts(registry: Registry, model: str, parts: set[str]) -> list[int]:
    """Versions whose lineage records one of these log parts among the data they learned from
    (the parts about to be rewritten: each held the person's rows when it was read)."""
    found = []
    for version in registry.list_versions(model):
        try:
            recorded = open_run(version).manifest.get("prediction_log") or {}
        except ModelcycleError:
            continue
        if parts & {str(part.get("path")) for part in recorded.get("parts") or []}:
            found.append(version.version)
    return found
