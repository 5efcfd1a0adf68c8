"""From one logged prediction back to everything that made the model that answered it.

Each hop of the trace is checked against the record one step closer to the prediction, never
against itself: the registry row against the log, the run folder's manifest against the
registry's hash of it, every run file against the manifest, the config against the registry's
config hash, the training data against the recorded fingerprint (recomputed from the source),
the gate's file against the registry's gate record, the audit entries against their hash
chain. A hop that does not check says what broke, and the hops after it say what they could
still read.
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from modelcycle import data
from modelcycle.artifacts import code_version, fingerprint_frame
from modelcycle.config import parse_config
from modelcycle.errors import ArtifactStoreError, IntegrityError, ModelcycleError
from modelcycle.records._reproduce import pin_log_parts
from modelcycle.registry import AuditEntry, ModelVersion, Registry, VerifiedRun, open_run
from modelcycle.serving import ID_PATTERN, id_millis, read_feedback, read_predictions


class HopStatus(StrEnum):
    VERIFIED = "verified"  # checked against an independent record, and it matched
    BROKEN = "broken"  # checked, and it did not match: the detail names what differs
    UNVERIFIED = "unverified"  # recorded, but nothing independent is left to check it with
    MISSING = "missing"  # the record that should be here is not


@dataclass(frozen=True)
class Hop:
    name: str
    status: HopStatus
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.facts, "hop": self.name, "status": self.status.value, "detail": self.detail}


@dataclass(frozen=True)
class Trace:
    prediction_id: str
    model: str | None
    version: int | None
    hops: tuple[Hop, ...]

    @property
    def intact(self) -> bool:
        return all(h.status is HopStatus.VERIFIED for h in self.hops)

    @property
    def breaks(self) -> list[Hop]:
        return [h for h in self.hops if h.status in (HopStatus.BROKEN, HopStatus.MISSING)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "model": self.model,
            "version": self.version,
            "intact": self.intact,
            "hops": [h.to_dict() for h in self.hops],
        }


def find_prediction(
    log_root: str, models: list[str], prediction_id: str
) -> tuple[str, dict[str, Any]] | None:
    """The model and logged row of a prediction id; the id's own timestamp narrows the read to
    the days around it (ids are UUIDv7), so one trace never reads the whole log."""
    since = until = None
    if ID_PATTERN.fullmatch(prediction_id):
        minted = datetime.fromtimestamp(id_millis(prediction_id) / 1000, UTC)
        since, until = minted - timedelta(days=1), minted + timedelta(days=1)
    for model in models:
        frame = read_predictions(log_root, model, since, until)
        match = frame[frame["id"] == prediction_id]
        if len(match):
            row = match.iloc[0].to_dict()
            return model, {k: _plain(v) for k, v in row.items() if not _absent(v)}
    return None


def trace_prediction(
    prediction_id: str, registry: Registry, log_root: str, data_dir: Path
) -> Trace:
    """Every hop from the prediction to the audit log; see the module docstring."""
    models = [m.name for m in registry.list_models()]
    found = find_prediction(log_root, models, prediction_id)
    if found is None:
        hop = Hop(
            "prediction",
            HopStatus.MISSING,
            f"no prediction with id {prediction_id!r} in the log under {log_root} "
            f"(models searched: {', '.join(models) or 'none'})",
        )
        return Trace(prediction_id, None, None, (hop,))
    model, row = found
    hops = [_prediction_hop(log_root, model, prediction_id, row)]
    try:
        version = registry.get_version(model, int(row["version"]))
    except ModelcycleError as exc:
        hops.append(Hop("version", HopStatus.MISSING, str(exc)))
        return Trace(prediction_id, model, int(row["version"]), tuple(hops))
    hops.append(_version_hop(version))
    hops += trace_version(version, registry, data_dir)
    return Trace(prediction_id, model, version.version, tuple(hops))


def trace_version(version: ModelVersion, registry: Registry, data_dir: Path) -> list[Hop]:
    """The hops from a registered version back to its data, code, parents and decisions."""
    hops: list[Hop] = []
    run = _open(version)
    hops.append(_run_hop(version, run))
    hops.append(_config_hop(version, run))
    hops.append(_data_hop(version, run, data_dir))
    hops.append(_code_hop(version, run))
    hops.append(_packages_hop(version, run))
    hops.append(_parents_hop(version, registry))
    hops.append(_gate_hop(version, run))
    entries = [e for e in registry.audit_log(version.model_name) if _concerns(e, version.version)]
    hops.append(_approvals_hop(version, entries))
    hops.append(_audit_hop(version, registry, entries))
    return hops


# -- hops ----------------------------------------------------------------------------------


def _prediction_hop(log_root: str, model: str, prediction_id: str, row: dict[str, Any]) -> Hop:
    feedback = read_feedback(log_root, model)
    label = feedback.loc[feedback["id"] == prediction_id, "label"]
    facts = {
        "model": model,
        "answered_by_version": int(row["version"]),
        "time": str(row["time"]),
        "role": row.get("role"),
        "request_id": row.get("request_id"),
        "outputs": {k: v for k, v in row.items() if k.startswith("output.")},
        "feedback": _plain(label.iloc[0]) if len(label) else None,
    }
    return Hop(
        "prediction",
        HopStatus.VERIFIED,
        f"logged at {row['time']} by {model} v{row['version']} (read from CRC-checked "
        "segments or Parquet parts of the prediction log)",
        facts,
    )


def _version_hop(version: ModelVersion) -> Hop:
    return Hop(
        "version",
        HopStatus.VERIFIED,
        f"{version.model_name} v{version.version} is in the registry ({version.status}, "
        f"registered {version.created_at:%Y-%m-%d %H:%M:%S} UTC by {version.created_by})",
        {
            "registry_status": str(version.status),
            "model_sha256": version.model_sha256,
            "manifest_sha256": version.manifest_sha256,
            "run_id": version.run_id,
        },
    )


def _open(version: ModelVersion) -> VerifiedRun | str:
    try:
        return open_run(version)
    except (IntegrityError, ArtifactStoreError) as exc:
        return str(exc)


def _run_hop(version: ModelVersion, run: VerifiedRun | str) -> Hop:
    facts = {"run_folder": version.artifact_uri, "manifest_sha256": version.manifest_sha256}
    if isinstance(run, str):
        return Hop("run folder", HopStatus.BROKEN, run, facts)
    problems = run.problems()
    stated = run.manifest["files"].get(version.model_file, {}).get("sha256")
    if stated != version.model_sha256:
        problems.insert(0, f"{version.model_file}: the manifest's hash is not the registry's")
    facts["files"] = len(run.manifest["files"])
    if problems:
        return Hop("run folder", HopStatus.BROKEN, "; ".join(problems), facts)
    return Hop(
        "run folder",
        HopStatus.VERIFIED,
        f"manifest matches the registry's SHA-256 and all {facts['files']} files match the "
        "manifest (model file included)",
        facts,
    )


def _config_hop(version: ModelVersion, run: VerifiedRun | str) -> Hop:
    facts = {"config_hash": version.config_hash}
    if isinstance(run, str):
        return Hop("config", HopStatus.UNVERIFIED, "the run folder could not be read", facts)
    if "config" not in run.manifest:
        return Hop("config", HopStatus.MISSING, "the manifest holds no resolved config", facts)
    facts["config"] = run.config
    return Hop(
        "config",
        HopStatus.VERIFIED,
        f"the resolved config in the manifest hashes to the registry's {version.config_hash}",
        facts,
    )


def _data_hop(version: ModelVersion, run: VerifiedRun | str, data_dir: Path) -> Hop:
    facts: dict[str, Any] = {"data_fingerprint": version.data_fingerprint}
    if isinstance(run, str) or "config" not in run.manifest:
        return Hop("data", HopStatus.UNVERIFIED, "no verified config to re-read the data", facts)
    facts["data_source"] = run.manifest.get("data_source")
    recorded = run.manifest.get("data_fingerprints") or {}
    facts["fingerprints"] = recorded
    if recorded.get("train") != version.data_fingerprint:
        return Hop(
            "data",
            HopStatus.BROKEN,
            f"the manifest's training fingerprint {recorded.get('train')} is not the "
            f"registry's {version.data_fingerprint}",
            facts,
        )
    try:
        config = copy.deepcopy(run.config)
        pin_log_parts(config, run)  # the log's rows as training read them, not as they are now
        now = recompute_fingerprints(config, data_dir)
    except ModelcycleError as exc:
        return Hop(
            "data",
            HopStatus.UNVERIFIED,
            f"the source can no longer be read as training read it ({exc}); the fingerprint "
            "is recorded but cannot be recomputed",
            facts,
        )
    differ = [k for k in ("train", "holdout") if recorded.get(k) != now.get(k)]
    facts["recomputed"] = now
    if differ:
        return Hop(
            "data",
            HopStatus.BROKEN,
            f"{facts['data_source']}: the {' and '.join(differ)} rows read from it now "
            "fingerprint differently from what training recorded (the data source changed)",
            facts,
        )
    return Hop(
        "data",
        HopStatus.VERIFIED,
        f"{facts['data_source']} re-read, cleaned and split with the recorded config: training "
        "and holdout fingerprints match the recorded ones",
        facts,
    )


def recompute_fingerprints(config_dict: dict[str, Any], data_dir: Path) -> dict[str, str]:
    """Fingerprints of the training and holdout rows the recorded config reads from its source
    today: the same load (the file, the labelled prediction log, or both), clean and split as
    the training flow."""
    config = parse_config(config_dict, "the recorded config")
    log = config.data.prediction_log
    file_rows, file_source = None, None
    if log is None or not log.only:
        source = data.resolve_source(config, data_dir)
        file_rows, file_source = data.load_source(config, source), str(source)
    loaded = data.combine_sources(config, file_rows, file_source)
    cleaned, _ = data.clean(loaded.table, config, loaded.duplicated)
    train, holdout = data.split(cleaned, config)
    return {"train": fingerprint_frame(train), "holdout": fingerprint_frame(holdout)}


def _code_hop(version: ModelVersion, run: VerifiedRun | str) -> Hop:
    recorded = version.code_version
    facts = {"code_version": recorded, "running_now": code_version()}
    if not isinstance(run, str) and run.manifest.get("code_version") != recorded:
        return Hop(
            "code",
            HopStatus.BROKEN,
            f"manifest says {run.manifest.get('code_version')}, registry {recorded}",
            facts,
        )
    commit = recorded.removesuffix("-dirty")
    if len(commit) != 40:
        return Hop("code", HopStatus.UNVERIFIED, f"{recorded}: not a git commit", facts)
    if not _commit_exists(commit):
        return Hop(
            "code",
            HopStatus.UNVERIFIED,
            f"commit {commit} is not in the repository this runs from",
            facts,
        )
    if recorded.endswith("-dirty"):
        return Hop(
            "code",
            HopStatus.UNVERIFIED,
            f"commit {commit} exists, but tracked files had uncommitted changes when it trained "
            "(-dirty): the exact code is not recoverable from git",
            facts,
        )
    return Hop("code", HopStatus.VERIFIED, f"commit {commit} exists in this repository", facts)


def _commit_exists(commit: str) -> bool:
    try:
        result = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def _packages_hop(version: ModelVersion, run: VerifiedRun | str) -> Hop:
    recorded = version.package_versions
    facts = {"package_versions": recorded}
    if not recorded:
        return Hop("packages", HopStatus.MISSING, "the registry holds no package versions", facts)
    if not isinstance(run, str) and run.manifest.get("package_versions") != recorded:
        return Hop(
            "packages", HopStatus.BROKEN, "manifest and registry disagree on versions", facts
        )
    listed = ", ".join(f"{k} {v}" for k, v in sorted(recorded.items()))
    return Hop("packages", HopStatus.VERIFIED, f"manifest and registry agree: {listed}", facts)


def _parents_hop(version: ModelVersion, registry: Registry) -> Hop:
    chain: list[dict[str, Any]] = []
    broken: list[str] = []
    current, seen = version.parent_version, {version.version}
    while current is not None and current not in seen:
        seen.add(current)
        try:
            parent = registry.get_version(version.model_name, current)
        except ModelcycleError as exc:
            broken.append(str(exc))
            break
        run = _open(parent)
        ok = not isinstance(run, str) and not run.problems()
        chain.append({"version": parent.version, "model_sha256": parent.model_sha256, "ok": ok})
        if not ok:
            broken.append(f"v{parent.version}: {run if isinstance(run, str) else run.problems()}")
        current = parent.parent_version
    facts = {"parents": chain}
    if version.parent_version is None:
        return Hop("parents", HopStatus.VERIFIED, "trained from scratch: no parent", facts)
    path = " <- ".join(f"v{c['version']}" for c in chain)
    if broken:
        return Hop("parents", HopStatus.BROKEN, f"{path}: " + "; ".join(broken), facts)
    return Hop("parents", HopStatus.VERIFIED, f"fine-tuned from {path}; each verified", facts)


def _gate_hop(version: ModelVersion, run: VerifiedRun | str) -> Hop:
    gate = version.gate
    checks = [
        {
            k: c.get(k)
            for k in ("name", "value", "comparison", "limit", "passed", "judged", "evidence")
        }
        for c in gate.get("checks", [])
    ]
    facts = {"decision": gate.get("decision"), "checks": checks}
    if not checks:
        return Hop("gate", HopStatus.MISSING, "no gate checks recorded for this version", facts)
    if isinstance(run, str):
        return Hop("gate", HopStatus.UNVERIFIED, "gate.json could not be read", facts)
    try:
        stored = json.loads(run.read("gate.json"))
    except (ModelcycleError, ValueError) as exc:
        return Hop("gate", HopStatus.BROKEN, f"gate.json: {exc}", facts)
    if stored.get("checks") != gate.get("checks") or stored.get("decision") != gate["decision"]:
        return Hop(
            "gate",
            HopStatus.BROKEN,
            "gate.json in the run folder and the registry's gate record differ",
            facts,
        )
    failed = [c["name"] for c in checks if c["judged"] and not c["passed"]]
    return Hop(
        "gate",
        HopStatus.VERIFIED,
        f"decision {gate['decision']}: {len(checks)} checks, "
        f"{sum(1 for c in checks if c['judged'])} judged, failed: {', '.join(failed) or 'none'}; "
        "gate.json matches the registry",
        facts,
    )


def _concerns(entry: AuditEntry, version: int) -> bool:
    return version in (entry.version, entry.details.get("previous"))


def _approvals_hop(version: ModelVersion, entries: list[AuditEntry]) -> Hop:
    approval = version.gate.get("approval")
    logged = [
        {"id": e.id, "action": e.action, "actor": e.actor, "reason": e.reason}
        for e in entries
        if e.action in ("approve", "disapprove", "approval-timeout")
    ]
    facts = {"approval": approval, "audit": logged}
    if approval is None:
        return Hop("approvals", HopStatus.VERIFIED, "the gate asked for no human approval", facts)
    if not logged:
        return Hop(
            "approvals",
            HopStatus.MISSING,
            "the gate records an approval but the audit log holds no entry for it",
            facts,
        )
    who = ", ".join(f"{e['action']} by {e['actor']} (#{e['id']})" for e in logged)
    return Hop("approvals", HopStatus.VERIFIED, who, facts)


def _audit_hop(version: ModelVersion, registry: Registry, entries: list[AuditEntry]) -> Hop:
    report = registry.verify_audit(version.model_name)[0]
    facts = {
        "entries": [
            {
                "id": e.id,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "version": e.version,
                "reason": e.reason,
                "entry_hash": e.entry_hash,
            }
            for e in entries
        ],
        "chain_head": report.head,
    }
    if not report.intact:
        return Hop("audit", HopStatus.BROKEN, report.summary(), facts)
    return Hop(
        "audit",
        HopStatus.VERIFIED,
        f"{len(entries)} entries concern v{version.version}; the model's hash chain is intact "
        f"(head {report.head})",
        facts,
    )


def _absent(value: Any) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """numpy and pandas scalars as JSON types."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
