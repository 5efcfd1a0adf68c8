"""What a re-run of a version's recorded training must match, and how to say what differed.

The re-run itself is a training flow run (the command line starts it); this module prepares
its config from the verified record and compares what it produced with what was registered:
the model file's SHA-256 first, and when that differs, the inputs that can explain it (data
fingerprints, package versions, code version, config hash) with the metrics of both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from modelcycle.artifacts import code_version, package_versions
from modelcycle.registry import ModelVersion, Registration, VerifiedRun


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
    about the model, not part of making it, so a re-run asks for none (and says so)."""
    config = copy.deepcopy(run.config)
    notes = []
    approval = config.get("gate", {}).get("approval", {})
    if approval.get("mode", "never") != "never":
        notes.append(
            f"gate.approval.mode {approval['mode']!r} set to 'never' for the re-run (the model "
            "file does not depend on it; the config hash of the re-run differs by that key)"
        )
        approval["mode"] = "never"
    return config, notes


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
    """Model hashes, and every recorded input that differs between the two runs."""
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
    if original.config_hash != reproduced.config_hash:
        differences.append(Difference("config hash", original.config_hash, reproduced.config_hash))
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
