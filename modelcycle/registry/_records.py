"""What the registry records, as frozen dataclasses, and the checks a record passes before
any transaction starts: a bad field is refused with its name, nothing half-written."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelcycle.errors import RegistryError
from modelcycle.utils import to_json_dict

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    ARCHIVED = "archived"
    REJECTED = "rejected"
    RETIRED = "retired"


REGISTRABLE = (VersionStatus.CANDIDATE, VersionStatus.REJECTED)
UNPROMOTABLE = (VersionStatus.REJECTED, VersionStatus.RETIRED)


@dataclass(frozen=True)
class ModelRecord:
    name: str
    owner: str
    description: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """One registered version. Fields are in the order `models versions` prints them: the
    aliases next to the status, the model's location next to its file name."""

    model_name: str
    version: int
    status: VersionStatus
    aliases: tuple[str, ...] = ()
    run_id: str
    artifact_uri: str
    model_file: str
    # Where the model file is: the run folder (path or fsspec URL) plus the file name.
    model_location: str = field(init=False)
    model_sha256: str
    # SHA-256 of the run's manifest.json; None only for versions registered before manifests
    # were anchored whose run folder was gone at the upgrade (they can never be champion).
    manifest_sha256: str | None
    data_fingerprint: str
    config_hash: str
    code_version: str
    package_versions: dict[str, Any]
    parent_version: int | None
    metrics: dict[str, Any]
    gate: dict[str, Any]
    created_at: datetime
    created_by: str

    def __post_init__(self) -> None:
        location = f"{self.artifact_uri.rstrip('/')}/{self.model_file}"
        object.__setattr__(self, "model_location", location)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class Registration:
    """What a training run hands the registry: validated here, before any transaction starts."""

    model_name: str
    owner: str
    description: str
    run_id: str
    artifact_uri: str
    model_file: str
    model_sha256: str
    data_fingerprint: str
    config_hash: str
    code_version: str
    package_versions: dict[str, Any]
    parent_version: int | None
    metrics: dict[str, Any]
    gate: dict[str, Any]
    # The run folder's manifest as committed (`RunFolder.manifest_sha256`). Optional so a
    # record can name a version before its folder exists, but such a version's files cannot
    # be verified: it is never moved to champion and its run files are never read.
    manifest_sha256: str | None = None

    def __post_init__(self) -> None:
        check_name("model_name", self.model_name)
        for field_name in ("owner", "run_id", "artifact_uri", "data_fingerprint", "config_hash"):
            check_text(field_name, getattr(self, field_name))
        check_text("code_version", self.code_version)
        if not isinstance(self.description, str):
            raise RegistryError(f"description: expected a string, got {self.description!r}")
        check_file_name(self.model_file)
        object.__setattr__(self, "model_sha256", check_sha256(self.model_sha256))
        if self.manifest_sha256 is not None:
            sha = check_sha256(self.manifest_sha256, "manifest_sha256")
            object.__setattr__(self, "manifest_sha256", sha)
        if self.parent_version is not None:
            check_version_number("parent_version", self.parent_version)
        for field_name in ("package_versions", "metrics", "gate"):
            object.__setattr__(self, field_name, check_json(field_name, getattr(self, field_name)))


@dataclass(frozen=True)
class AuditEntry:
    """One decision. `seq`, `prev_hash` and `entry_hash` place it in its model's hash chain
    (None for entries written before the registry had one: see `audit-chain-start`)."""

    id: int
    at: datetime
    actor: str
    action: str
    model_name: str
    version: int | None
    reason: str
    details: dict[str, Any]
    seq: int | None = None
    prev_hash: str | None = None
    entry_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class Move:
    """What one promotion, rollback or retirement transaction did: the version it acted on,
    the audit entry it wrote, and the champion it left. Callers report this entry, never
    "the latest entry", which under concurrency can be someone else's."""

    version: ModelVersion
    entry: AuditEntry
    champion: int | None

    @property
    def promoted(self) -> bool:
        """False when a training run's promotion found the champion changed since its gate."""
        return self.champion == self.version.version and self.entry.action != "retire"

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


# -- input checks --------------------------------------------------------------------------


def registrable_status(status: VersionStatus | str) -> VersionStatus:
    try:
        value = VersionStatus(status)
    except ValueError:
        value = None
    if value not in REGISTRABLE:
        allowed = " or ".join(s.value for s in REGISTRABLE)
        raise RegistryError(f"status: a new version must be {allowed}, got {status!r}")
    return value


def check_name(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise RegistryError(
            f"{field_name}: expected 1-128 letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit, got {value!r}"
        )


def check_text(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{field_name}: expected a non-empty string, got {value!r}")


def check_file_name(value: object) -> None:
    check_text("model_file", value)
    assert isinstance(value, str)
    if "/" in value or "\\" in value or value in (".", ".."):
        raise RegistryError(
            f"model_file: expected a file name inside the run folder, got {value!r}"
        )


def check_sha256(value: object, field_name: str = "model_sha256") -> str:
    if not isinstance(value, str) or not _SHA256.match(value.lower()):
        raise RegistryError(f"{field_name}: expected 64 hexadecimal characters, got {value!r}")
    return value.lower()


def check_version_number(field_name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegistryError(f"{field_name}: expected a version number >= 1, got {value!r}")


def check_json(field_name: str, value: object) -> dict[str, Any]:
    """Strict JSON (no NaN): PostgreSQL rejects what SQLite would quietly store."""
    if not isinstance(value, dict):
        raise RegistryError(f"{field_name}: expected a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{field_name}: not storable as JSON ({exc})") from exc
