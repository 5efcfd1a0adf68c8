"""Everything recorded about one version, gathered once and checked once, for the documents
that cite it (the technical documentation, the ML Test Score, the CycloneDX export).

Each piece of evidence is a file (or a registry row) with the SHA-256 it was checked against:
run files through the registry-anchored manifest, monitoring evidence through its own
manifest, audit entries through the hash chain, the project's `prefect.yaml` as found now.
What cannot be read or does not check is kept as a problem, never replaced by a guess.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fsspec.core import url_to_fs

from modelcycle.artifacts import MANIFEST_NAME, monitoring_store, sha256_bytes
from modelcycle.errors import ArtifactStoreError, IntegrityError, ModelcycleError
from modelcycle.registry import AuditEntry, ChainReport, Incident, ModelVersion, open_run


@dataclass(frozen=True)
class Evidence:
    """One cited record: where it is, the SHA-256 it was checked against, and whether it
    checked (False: the file changed or is gone, and `problem` says how)."""

    path: str
    sha256: str | None
    verified: bool
    problem: str | None = None

    def cite(self) -> str:
        if not self.verified:
            return f"{self.path} (UNVERIFIED: {self.problem})"
        if self.sha256 is None:
            return f"{self.path} (registry record)"
        return f"{self.path} (sha256 {self.sha256})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "verified": self.verified,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class MonitoringRecord:
    run_id: str
    manifest: dict[str, Any]
    evidence: Evidence
    decision: dict[str, Any] | None
    quality: dict[str, Any] | None


@dataclass
class VersionRecords:
    """What the registry, the run folder, monitoring and the deployments recorded."""

    version: ModelVersion
    manifest: dict[str, Any] | None
    files: dict[str, Evidence] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)  # parsed JSON run files
    audit: list[AuditEntry] = field(default_factory=list)  # this version's entries
    model_audit: list[AuditEntry] = field(default_factory=list)  # the model's whole log
    chain: ChainReport | None = None
    incidents: list[Incident] = field(default_factory=list)
    monitoring: list[MonitoringRecord] = field(default_factory=list)
    deployments: dict[str, Any] | None = None
    deployments_evidence: Evidence | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config") or {}) if self.manifest else {}

    def file(self, name: str) -> Evidence:
        """A run file's evidence; a file the manifest does not list is cited as missing."""
        if name in self.files:
            return self.files[name]
        where = f"{self.version.artifact_uri.rstrip('/')}/{name}"
        return Evidence(where, None, False, "not in the run's manifest")

    def registry_row(self) -> Evidence:
        v = self.version
        return Evidence(
            f"registry: {v.model_name} v{v.version} (manifest anchor)", v.manifest_sha256, True
        )

    def entry(self, entry: AuditEntry) -> Evidence:
        intact = self.chain is not None and self.chain.intact
        return Evidence(
            f"audit log #{entry.id} ({entry.action})",
            entry.entry_hash,
            intact,
            None if intact else "the audit chain does not verify",
        )


_JSON_FILES = (
    "card.json",
    "gate.json",
    "metrics.json",
    "metric_intervals.json",
    "slices.json",
    "profile.json",
    "cleaning.json",
    "gate/fairness.json",
    "gate/robustness.json",
    "gate/budgets.json",
    "gate/non_inferiority.json",
)


def collect_records(
    version: ModelVersion,
    audit: list[AuditEntry],
    chain: ChainReport | None,
    incidents: list[Incident],
    project: Path | None = None,
) -> VersionRecords:
    """Read and check every record of `version`; `audit` is the model's whole log (oldest
    first), `project` the folder holding `prefect.yaml` (the schedules), if any."""
    records = VersionRecords(version=version, manifest=None, chain=chain)
    records.model_audit = list(audit)
    records.audit = [e for e in audit if version.version in (e.version, e.details.get("previous"))]
    records.incidents = [i for i in incidents if i.version == version.version]
    try:
        run = open_run(version)
    except (IntegrityError, ArtifactStoreError) as exc:
        records.problems.append(str(exc))
        run = None
    if run is not None:
        records.manifest = run.manifest
        base = version.artifact_uri.rstrip("/")
        broken = set()
        for problem in run.problems():
            broken.add(problem.split(":", 1)[0])
            records.problems.append(problem)
        for name, entry in run.manifest["files"].items():
            ok = name not in broken
            records.files[name] = Evidence(
                f"{base}/{name}", entry["sha256"], ok, None if ok else "differs from the manifest"
            )
        records.files[MANIFEST_NAME] = Evidence(
            f"{base}/{MANIFEST_NAME}", version.manifest_sha256, True
        )
        for name in _JSON_FILES:
            if name in run.manifest["files"] and name not in broken:
                try:
                    records.documents[name] = json.loads(run.read(name))
                except (ModelcycleError, ValueError) as exc:
                    records.problems.append(f"{name}: {exc}")
    records.monitoring = _monitoring(version)
    if project is not None:
        _deployments(records, project / "prefect.yaml")
    return records


def _monitoring(version: ModelVersion) -> list[MonitoringRecord]:
    """Monitoring evidence folders of this version, each checked against its own manifest
    (monitoring folders are not registered, so their manifest's hash is cited as read now)."""
    store = monitoring_store(version.artifact_uri)
    found = []
    for run_id in store.list_runs(version.model_name):
        try:
            manifest = store.read_manifest(version.model_name, run_id)
        except ModelcycleError:
            continue
        if manifest.get("kind") != "monitoring":
            continue
        if manifest.get("monitored_version") != version.version:
            continue
        uri = f"{store.run_uri(version.model_name, run_id).rstrip('/')}/{MANIFEST_NAME}"
        fs, path = url_to_fs(uri)
        raw = fs.cat_file(path)
        problems = store.verify(version.model_name, run_id)
        evidence = Evidence(uri, sha256_bytes(raw), not problems, "; ".join(problems) or None)
        docs: dict[str, Any] = {}
        for name in ("decision.json", "quality.json"):
            if name in manifest["files"] and not problems:
                docs[name] = json.loads(
                    store.read_verified(version.model_name, run_id, name, manifest)
                )
        found.append(
            MonitoringRecord(
                run_id, manifest, evidence, docs.get("decision.json"), docs.get("quality.json")
            )
        )
    return sorted(found, key=lambda m: str(m.manifest.get("created_at")))


def _deployments(records: VersionRecords, path: Path) -> None:
    try:
        raw = path.read_bytes()
    except OSError:
        return
    records.deployments_evidence = Evidence(str(path), hashlib.sha256(raw).hexdigest(), True)
    try:
        records.deployments = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        records.problems.append(f"{path}: not valid YAML ({exc})")
