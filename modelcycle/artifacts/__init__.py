"""What a run writes and how it is checked: the artifact store, model files, lineage."""

from modelcycle.artifacts._lineage import (
    GIT_TIMEOUT_SECONDS,
    NOT_INSTALLED,
    TRACKED_PACKAGES,
    code_version,
    config_hash,
    fingerprint_frame,
    package_versions,
    run_lineage,
)
from modelcycle.artifacts._model_io import (
    TRUSTED_TYPES,
    UntrustedModelError,
    dump_model,
    load_model,
    sha256_bytes,
    sha256_file,
)
from modelcycle.artifacts._store import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PENDING_NAME,
    RESERVED_KEYS,
    STAGING_PREFIX,
    STALE_AFTER_SECONDS,
    ArtifactStore,
    Reconciliation,
    RunFolder,
    RunWriter,
)

__all__ = [
    "GIT_TIMEOUT_SECONDS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "NOT_INSTALLED",
    "PENDING_NAME",
    "RESERVED_KEYS",
    "STAGING_PREFIX",
    "STALE_AFTER_SECONDS",
    "TRACKED_PACKAGES",
    "TRUSTED_TYPES",
    "ArtifactStore",
    "Reconciliation",
    "RunFolder",
    "RunWriter",
    "UntrustedModelError",
    "code_version",
    "config_hash",
    "dump_model",
    "fingerprint_frame",
    "load_model",
    "package_versions",
    "run_lineage",
    "sha256_bytes",
    "sha256_file",
]
