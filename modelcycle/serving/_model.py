"""A model version ready to answer: its verified pipeline, the config it was trained with, and
the request schema derived from that config.

Loading goes only through `modelcycle.artifacts.load_model` (SHA-256 against the registry,
skops with trusted types). The config comes from the run's manifest, as monitoring reads it,
and its hash must equal the one the registry recorded, so a manifest edited after
registration cannot change what the service accepts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from modelcycle.artifacts import config_hash, load_compiled, load_model
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.errors import IntegrityError
from modelcycle.registry import ModelVersion, open_run
from modelcycle.serving._schema import InputSchema, build_schema
from modelcycle.training import runtime_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Outputs for the rows of one micro-batch, in order."""

    labels: list[Any]
    probabilities: list[dict[str, float]] | None


@dataclass(frozen=True)
class ServedModel:
    """One verified version; shared read-only by every request of a worker."""

    record: ModelVersion
    pipeline: Any
    config: PipelineConfig
    schema: InputSchema
    classes: tuple[Any, ...] | None
    loaded_at: datetime
    # "treelite 4.8.1" when `pipeline` is the version's verified compiled form, else None.
    compiled: str | None = None

    @property
    def name(self) -> str:
        return self.record.model_name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def predict(self, batches: list[Any]) -> Predictions:
        """Predict a micro-batch from one frame; run in the worker's single prediction thread."""
        frame = self.schema.frame(batches)
        if self.classes is None:
            values = np.asarray(self.pipeline.predict(frame), dtype="float64")
            return Predictions([float(v) for v in values], None)
        if not hasattr(self.pipeline, "predict_proba"):
            return Predictions([_plain(v) for v in self.pipeline.predict(frame)], None)
        proba = np.asarray(self.pipeline.predict_proba(frame), dtype="float64")
        keys = [str(c) for c in self.classes]
        labels = [self.classes[i] for i in proba.argmax(axis=1)]
        rows = [dict(zip(keys, map(float, row), strict=True)) for row in proba.tolist()]
        return Predictions(labels, rows)

    def label_for(self, value: Any) -> Any | None:
        """The class a feedback label names (1, "1" and 1.0 all name class 1), or None."""
        if self.classes is None:
            return None
        for cls in self.classes:
            if isinstance(value, bool) != isinstance(cls, bool):
                continue
            if value == cls or str(value) == str(cls):
                return cls
        return None

    def lineage(self) -> dict[str, Any]:
        r = self.record
        return {
            "version": r.version,
            "status": r.status.value,
            "aliases": list(r.aliases),
            "parent_version": r.parent_version,
            "run_id": r.run_id,
            "model_sha256": r.model_sha256,
            "data_fingerprint": r.data_fingerprint,
            "config_hash": r.config_hash,
            "code_version": r.code_version,
            "created_at": r.created_at.isoformat(),
            "created_by": r.created_by,
            "metrics": dict(r.metrics),
            "gate_decision": r.gate.get("decision"),
            "compiled_form": self.compiled,  # the runtime answering, or None: the pipeline
        }


def load_served(
    record: ModelVersion, pii_policy: Literal["refuse", "drop"], use_compiled: bool = True
) -> ServedModel:
    """Verify and load one registered version; raises IntegrityError when anything differs.

    With `use_compiled`, a compiled form training kept answers instead of the pipeline (the
    pipeline still defines the request schema); a compiled file that does not verify refuses
    the version like a changed model file would.
    """
    run = open_run(record)
    manifest = run.manifest
    raw_config = manifest.get("config")
    if not isinstance(raw_config, dict) or config_hash(raw_config) != record.config_hash:
        raise IntegrityError(
            f"{record.model_name} v{record.version}: the config in its run manifest does not "
            "hash to the config_hash the registry recorded"
        )
    config = parse_config(raw_config, f"{record.model_name} v{record.version} manifest config")
    pipeline = load_model(record.model_location, record.model_sha256)
    classes = None
    if config.task.is_classification:
        classes = tuple(_plain(c) for c in np.asarray(pipeline.classes_).tolist())
    compiled = _compiled_form(run, manifest) if use_compiled else None
    return ServedModel(
        record=record,
        pipeline=pipeline if compiled is None else compiled,
        config=config,
        schema=build_schema(config, pipeline, pii_policy),
        classes=classes,
        loaded_at=datetime.now(UTC),
        compiled=None if compiled is None else _runtime_of(compiled),
    )


def _compiled_form(run: Any, manifest: dict[str, Any]) -> Any | None:
    """The compiled form the manifest lists, read through the verified run (its bytes must
    hash to the manifest's entry) and parsed only after a second check against the SHA-256
    the training run recorded for it; None when there is none or the runtime is missing."""
    summary = manifest.get("compiled_form")
    if not isinstance(summary, dict) or not summary.get("kept") or not summary.get("file"):
        return None
    if runtime_version() is None:
        logger.warning(
            "%s has a compiled form but treelite is not installed: serving the pipeline",
            run.version.model_name,
        )
        return None
    name = summary["file"]
    data = run.read(name)
    where = f"{run.version.artifact_uri.rstrip('/')}/{name}"
    return load_compiled(data, summary["sha256"], where)


def _runtime_of(compiled: Any) -> str:
    return f"{compiled.spec['runtime']} {compiled.spec['runtime_version']}"


def _read_manifest(record: ModelVersion) -> dict[str, Any]:
    """The run manifest, only if it is the one the registry anchored for this version."""
    return open_run(record).manifest


def _plain(value: Any) -> Any:
    """numpy scalars as the JSON-ready Python values they hold."""
    return value.item() if isinstance(value, np.generic) else value
