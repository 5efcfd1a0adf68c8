"""Real run folders for registry tests: a model file, a card and a manifest written through the
artifact store, so every champion move verifies real bytes against real hashes.

The model file holds arbitrary bytes: moving the alias hashes files, it never loads a model.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

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


POSTGRES_ENV = "MODELCYCLE_TEST_POSTGRES_URL"


@contextmanager
def _scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"modelcycle_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests on SQLite and on a real PostgreSQL server (.ci/run starts one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'registry.db'}"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {POSTGRES_ENV} is not: .ci/run starts PostgreSQL")
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run starts PostgreSQL and sets it)")
    with _scratch_database(server) as url:
        yield url
