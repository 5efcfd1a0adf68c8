"""What a re-run of a version's recorded training must match, and how to say what differed.

The re-run itself is a training flow run (the command line starts it); this module prepares
its config from the verified record and compares what it produced with what was registered:
the model file's SHA-256 first, and when that differs, the inputs that can explain it (data
fingerprints, package versions, code version, config hash) with the metrics of both.

A version trained from the labelled prediction log is re-run on exactly the log parts its
lineage recorded, each checked against its SHA-256, never on the log as it is now: an open
range (no `until`) has grown since, a closed one gains answers and labels that reached the log
late (a worker's segment compacted after the training), and erasure or retention may have
rewritten or removed a part.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelcycle.artifacts import code_version, config_hash, package_versions
from modelcycle.config import PredictionLogSource
from modelcycle.data import check_pinned_parts
from modelcycle.errors import ModelcycleError
from modelcycle.registry import AuditEntry, ModelVersion, Registration, VerifiedRun

# Keys of `data.prediction_log` the re-run sets from the lineage when the recorded config left
# them unset: where the log was and exactly which parts were read.
_PIN_KEYS = ("root", "parts")


@dataclass(frozen=True)
class Difference:
    what: str
    recorded: Any
    now: Any

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "recorded": self.recorded, "now": self.now}


@dataclass(frozen=True)
class Reproduction:
    model: str
    version: int
    mode: str
    recorded_sha256: str
    reproduced_sha256: str
    differences: tuple[Difference, ...]
    recorded_metrics: dict[str, Any]
    reproduced_metrics: dict[str, Any]
    notes: tuple[str, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return self.recorded_sha256 == self.reproduced_sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "mode": self.mode,
            "identical": self.identical,
            "recorded_sha256": self.recorded_sha256,
            "reproduced_sha256": self.reproduced_sha256,
            "differences": [d.to_dict() for d in self.differences],
            "recorded_metrics": self.recorded_metrics,
            "reproduced_metrics": self.reproduced_metrics,
            "notes": list(self.notes),
        }


def rerun_config(run: VerifiedRun) -> tuple[dict[str, Any], list[str]]:
    """The recorded (verified) config, made to run unattended: a human approval is a decision
    about the model, not part of making it, so a re-run asks for none (and says so). A
    prediction-log source is pinned to the parts the lineage recorded (`pin_log_parts`)."""
    config = copy.deepcopy(run.config)
    notes = []
    approval = config.get("gate", {}).get("approval", {})
    if approval.get("mode", "never") != "never":
        notes.append(
            f"gate.approval.mode {approval['mode']!r} set to 'never' for the re-run (the model "
            "file does not depend on it; the config hash of the re-run differs by that key)"
        )
        approval["mode"] = "never"
    notes += pin_log_parts(config, run)
    return config, notes


def pin_log_parts(config: dict[str, Any], run: VerifiedRun) -> list[str]:
    """Point the log source at exactly the recorded parts (and the recorded root, so a moved
    `MODELCYCLE_HOME` does not change what is read); `since`/`until` stay as recorded."""
    log = (config.get("data") or {}).get("prediction_log")
    if log is None or log.get("parts") is not None:  # no log, or the config pinned it itself
        return []
    where = f"{run.version.model_name} v{run.version.version}"
    recorded = run.manifest.get("prediction_log") or {}
    parts = recorded.get("parts")
    if not parts:
        raise ModelcycleError(
            f"{where}: trained from the prediction log, but its lineage records no log parts "
            "with their SHA-256, so the rows it learned from cannot be read again as they were"
        )
    log["parts"] = [{"path": p["path"], "sha256": p["sha256"]} for p in parts]
    if log.get("root") is None and recorded.get("root"):
        log["root"] = recorded["root"]
    return [
        f"the prediction log is read from exactly the {len(parts)} parts the lineage recorded, "
        "each checked against its SHA-256 (data.prediction_log.parts, set for the re-run and "
        "left out of the config hash comparison)"
    ]


def check_recorded_parts(config: dict[str, Any], audit: Sequence[AuditEntry], where: str) -> None:
    """Refuse a re-run whose pinned log parts are gone or rewritten, before anything is
    trained: the first such part named, with the audit entry that explains it when there is
    one (the erasure that rewrote it, the retention that removed its day)."""
    log = (config.get("data") or {}).get("prediction_log")
    if not log or not log.get("parts"):
        return
    problems = check_pinned_parts(PredictionLogSource.model_validate(log))
    if not problems:
        return
    path, problem = next(iter(problems.items()))
    more = f"; {len(problems) - 1} more recorded parts differ too" if len(problems) > 1 else ""
    raise ModelcycleError(
        f"{where}: cannot be reproduced from the prediction log it was trained on: "
        f"{problem}{_audited_cause(path, audit)}{more}"
    )


def _audited_cause(path: str, audit: Sequence[AuditEntry]) -> str:
    """The latest erasure that rewrote this part, or retention that removed its partition."""
    for entry in sorted(audit, key=lambda e: e.at, reverse=True):
        details = entry.details or {}
        when = f"{entry.at:%Y-%m-%d %H:%M} UTC by {entry.actor} (audit entry {entry.id})"
        if entry.action == "erasure" and path in (details.get("parts") or []):
            return f"; `modelcycle privacy erase` rewrote it on {when}"
        folders = [str(f).rstrip("/") + "/" for f in details.get("partitions") or []]
        if entry.action == "retention" and any(path.startswith(f) for f in folders):
            return f"; retention removed its day on {when}"
    return ""


def comparable_config(rerun: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The re-run's config as it would have been recorded without the re-run's log pin.

    The pin (`data.prediction_log.parts`, and `root` when it was unset) only makes the re-run
    read what the lineage says was read; the recorded config did not state it, and its rows
    are compared through the data fingerprints. Every other key is compared as it is, so any
    other difference between the configs still shows as a config hash difference.
    """
    config = copy.deepcopy(rerun)
    log = (config.get("data") or {}).get("prediction_log")
    before = (recorded.get("data") or {}).get("prediction_log")
    if log is None or before is None:
        return config
    for key in _PIN_KEYS:
        if key in before:
            log[key] = copy.deepcopy(before[key])
        else:
            log.pop(key, None)
    return config


def parent_registration(parent: ModelVersion) -> Registration:
    """The recorded parent, registered in the re-run's own registry (pointing at the original,
    verified run folder) so the fine-tune continues exactly that model."""
    return Registration(
        model_name=parent.model_name,
        owner="reproduction",
        description=f"parent v{parent.version} of a reproduction",
        run_id=parent.run_id,
        artifact_uri=parent.artifact_uri,
        model_file=parent.model_file,
        model_sha256=parent.model_sha256,
        data_fingerprint=parent.data_fingerprint,
        config_hash=parent.config_hash,
        code_version=parent.code_version,
        package_versions=parent.package_versions,
        parent_version=None,
        metrics=parent.metrics,
        gate=parent.gate,
        manifest_sha256=parent.manifest_sha256,
    )


def compare(
    original: ModelVersion,
    original_manifest: dict[str, Any],
    reproduced: ModelVersion,
    reproduced_manifest: dict[str, Any],
    notes: list[str],
) -> Reproduction:
    """Model hashes, and every recorded input that differs between the two runs (the config
    hash of the re-run as `comparable_config` gives it: without its log pin)."""
    differences: list[Difference] = []
    recorded_fp = original_manifest.get("data_fingerprints") or {}
    now_fp = reproduced_manifest.get("data_fingerprints") or {}
    for part in sorted(set(recorded_fp) | set(now_fp)):
        if recorded_fp.get(part) != now_fp.get(part):
            differences.append(
                Difference(f"data fingerprint ({part})", recorded_fp.get(part), now_fp.get(part))
            )
    recorded_pkgs = original.package_versions or {}
    now_pkgs = reproduced.package_versions or package_versions()
    for name in sorted(set(recorded_pkgs) | set(now_pkgs)):
        if recorded_pkgs.get(name) != now_pkgs.get(name):
            differences.append(
                Difference(f"package {name}", recorded_pkgs.get(name), now_pkgs.get(name))
            )
    now_code = reproduced.code_version or code_version()
    if original.code_version != now_code:
        differences.append(Difference("code version", original.code_version, now_code))
    now_config = reproduced.config_hash
    if "config" in reproduced_manifest and "config" in original_manifest:
        now_config = config_hash(
            comparable_config(reproduced_manifest["config"], original_manifest["config"])
        )
    if original.config_hash != now_config:
        differences.append(Difference("config hash", original.config_hash, now_config))
    return Reproduction(
        model=original.model_name,
        version=original.version,
        mode=str(original_manifest.get("training_mode")),
        recorded_sha256=original.model_sha256,
        reproduced_sha256=reproduced.model_sha256,
        differences=tuple(differences),
        recorded_metrics=dict(original.metrics),
        reproduced_metrics=dict(reproduced.metrics),
        notes=tuple(notes),
    )
