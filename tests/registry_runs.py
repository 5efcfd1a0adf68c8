"""Real run folders for registry tests: a model file, a card and a manifest written through the
artifact store, so every champion move verifies real bytes against real hashes.

The model file holds arbitrary bytes: moving the alias hashes files, it never loads a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcycle.artifacts import ArtifactStore, config_hash, sha256_bytes

MODEL_FILE = "model.skops"


@dataclass(frozen=True)
class WrittenRun:
    uri: str
    model_sha256: str
    manifest_sha256: str
    config_hash: str

    @property
    def folder(self) -> Path:
        return Path(self.uri)

    def fields(self) -> dict[str, Any]:
        """The Registration fields this folder decides."""
        return {
            "artifact_uri": self.uri,
            "model_file": MODEL_FILE,
            "model_sha256": self.model_sha256,
            "manifest_sha256": self.manifest_sha256,
            "config_hash": self.config_hash,
        }


def write_run(store_root: Path, model: str, run_id: str) -> WrittenRun:
    # Tests of bad model names still need a folder; the registry refuses the name first.
    segment = model if re.fullmatch(r"[a-z0-9][a-z0-9-]*", model) else "unnamed"
    config = {"name": model, "task": "binary_classification", "split": {"seed": 0}}
    model_bytes = f"fitted pipeline of {model} {run_id}".encode()
    with ArtifactStore(store_root).open_run(segment, run_id) as run:
        run.write_bytes(MODEL_FILE, model_bytes)
        run.write_json("card.json", {"model": model, "run_id": run_id})
        folder = run.commit(
            {
                "config": config,
                "config_hash": config_hash(config),
                "model_file": MODEL_FILE,
                "model_sha256": sha256_bytes(model_bytes),
            }
        )
    return WrittenRun(
        folder.uri, sha256_bytes(model_bytes), folder.manifest_sha256, config_hash(config)
    )
