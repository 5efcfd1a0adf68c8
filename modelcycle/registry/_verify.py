"""Reading a version's run folder through the registry's record of it.

The registry records each version's model file hash, manifest hash and config hash; the
manifest records every other file's hash. A read goes registry -> manifest -> file, so a
manifest edited after registration (its config, or the hash next to an edited card) is
refused instead of vouching for what it now says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fsspec.core import url_to_fs

from modelcycle.artifacts import MANIFEST_NAME, ArtifactStore, config_hash, sha256_bytes
from modelcycle.errors import ArtifactStoreError, IntegrityError
from modelcycle.registry._records import ModelVersion


@dataclass(frozen=True)
class VerifiedRun:
    """A version's run folder whose manifest matched the registry; reads check each file."""

    version: ModelVersion
    store: ArtifactStore = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the version was trained from (checked against its hash)."""
        return dict(self.manifest["config"])

    def read(self, name: str) -> bytes:
        v = self.version
        return self.store.read_verified(v.model_name, v.run_id, name, self.manifest)

    def problems(self) -> list[str]:
        """Every file that differs from the manifest (all of them hashed), empty when intact."""
        v = self.version
        return self.store.verify(v.model_name, v.run_id)


def open_run(version: ModelVersion) -> VerifiedRun:
    """The version's run folder, once its manifest is the one registered with it.

    Raises IntegrityError naming the folder and what differs: the manifest's own hash, the
    model file or config hash it states, or (when it carries one) its embedded config.
    """
    v = version
    where = f"{v.model_name} v{v.version}"
    if v.manifest_sha256 is None:
        raise IntegrityError(
            f"{where}: the registry holds no manifest hash for it (registered before "
            f"manifests were anchored, and {v.artifact_uri}/{MANIFEST_NAME} was not found when "
            "the registry was upgraded): its files cannot be verified"
        )
    store = ArtifactStore.holding(v.artifact_uri)
    manifest = store.read_manifest(v.model_name, v.run_id, v.manifest_sha256)
    stated = {k: manifest.get(k) for k in ("model_file", "model_sha256", "config_hash")}
    recorded = {"model_file": v.model_file, "model_sha256": v.model_sha256}
    recorded["config_hash"] = v.config_hash
    for key, value in stated.items():
        if value is not None and value != recorded[key]:
            raise IntegrityError(
                f"{v.artifact_uri}/{MANIFEST_NAME}: {key} is {value!r} but the registry "
                f"recorded {recorded[key]!r} for {where}"
            )
    if "config" in manifest and config_hash(manifest["config"]) != v.config_hash:
        raise IntegrityError(
            f"{v.artifact_uri}/{MANIFEST_NAME}: the embedded config hashes to "
            f"{config_hash(manifest['config'])}, not the config hash the registry recorded for "
            f"{where} ({v.config_hash}): it was changed after training"
        )
    if v.model_file not in manifest["files"]:
        raise IntegrityError(
            f"{v.artifact_uri}/{MANIFEST_NAME}: does not list the model file {v.model_file!r}"
        )
    return VerifiedRun(version, store, manifest)


def version_problems(version: ModelVersion) -> list[str]:
    """Why the version's files are not the files that were registered; empty when they are.

    Everything is checked: the manifest against the registry, every file against the
    manifest, and the model file against the registry's own hash (through the manifest).
    """
    try:
        run = open_run(version)
        found = run.problems()
    except (IntegrityError, ArtifactStoreError) as exc:
        return [str(exc)]
    if run.manifest["files"][version.model_file]["sha256"] != version.model_sha256:
        found.insert(0, f"{version.model_file}: the manifest's hash is not the registry's")
    return found


def stored_manifest_sha256(artifact_uri: str) -> str | None:
    """SHA-256 of a run folder's manifest as it is now, None when there is none: what an
    upgraded registry records for versions registered before manifests were anchored."""
    fs, path = url_to_fs(f"{artifact_uri.rstrip('/')}/{MANIFEST_NAME}")
    try:
        return sha256_bytes(fs.cat_file(path))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
