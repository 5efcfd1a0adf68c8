"""Persistence of a run: its folder in the artifact store, and its Prefect artifacts."""

from __future__ import annotations

import io

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from modelcycle.artifacts import ArtifactStore, Reconciliation, RunFolder
from modelcycle.errors import RegistryError
from modelcycle.registry import ModelVersion, Registry
from modelcycle.reports import MODEL_FILE, TrainingRun, metrics_rows
from modelcycle.utils import json_ready
from tasks.common import TASK_OPTIONS


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


@task(name="reconcile-run-folders", **TASK_OPTIONS)
def reconcile_run_folders(store_root: str, registry_url: str, model: str) -> Reconciliation:
    """Settle what killed runs of this model left in the store before adding to it: folders
    registered but not confirmed become runs, unregistered ones are marked orphaned, staging of
    dead writers goes."""
    try:
        registered = {v.run_id for v in Registry(registry_url).list_versions(model)}
    except RegistryError:  # no version of this model yet
        registered = set()
    found = ArtifactStore(store_root).reconcile(model, registered)
    logger = get_run_logger()
    for label, runs in (
        ("confirmed (registered before a kill)", found.confirmed),
        ("marked orphaned (no registry row)", found.orphaned),
        ("removed stale staging", found.removed_staging),
    ):
        if runs:
            logger.warning("Run folders of %s %s: %s", model, label, ", ".join(runs))
    return found


@task(name="confirm-run-folder", **TASK_OPTIONS)
def confirm_run_folder(store_root: str, folder: RunFolder) -> None:
    """The version is registered: the folder becomes a listed run."""
    ArtifactStore(store_root).confirm_registered(folder.model, folder.run_id)


@task(name="write-run-folder", **TASK_OPTIONS)
def write_run_folder(store_root: str, training_run: TrainingRun) -> RunFolder:
    """All files, then the manifest, then the rename: a crash leaves no complete-looking folder,
    and the folder waits for `confirm_run_folder` (after registration) to be listed as a run."""
    contents = training_run.contents()
    store = ArtifactStore(store_root)
    with store.open_run(training_run.model, training_run.run_id) as run:
        run.write_bytes(MODEL_FILE, contents.model_bytes)
        run.write_json(
            "metrics.json",
            json_ready(
                {
                    "candidate": contents.metrics,
                    "champion_same_rows": contents.champion_metrics,
                    "comparison": contents.comparison,
                }
            ),
        )
        run.write_json("slices.json", json_ready(contents.slices))
        run.write_json("gate.json", json_ready(contents.gate))
        run.write_json("profile.json", json_ready(contents.profile))
        run.write_json("cleaning.json", json_ready(contents.cleaning))
        if contents.search_results is not None:
            run.write_text("search_results.csv", _csv(contents.search_results))
        for name, obj in sorted(contents.evidence.items()):
            run.write_json(name, json_ready(obj))
        for name, text in sorted(contents.texts.items()):
            run.write_text(name, text)
        for name, figure in sorted(contents.figures.items()):
            run.write_figure(f"plots/{name}", figure)
        for name, data in sorted(contents.reference_files.items()):
            run.write_bytes(name, data)
        for name, data in sorted(contents.binary_files.items()):
            run.write_bytes(name, data)
        folder = run.commit(json_ready(contents.metadata), pending_registration=True)
    get_run_logger().info("Run folder written: %s", folder.uri)
    return folder


@task(name="publish-report", **TASK_OPTIONS)
def publish_report(training_run: TrainingRun, version: ModelVersion, run_uri: str) -> None:
    """Stable keys per model, so the UI shows every run's report as one history."""
    model = training_run.model
    create_markdown_artifact(
        key=f"{model}-training-summary",
        markdown=training_run.summary(version, run_uri),
        description=f"Training summary for {model}",
    )
    create_table_artifact(
        key=f"{model}-metrics",
        table=metrics_rows(training_run.metrics, training_run.comparison),
        description=f"Holdout metrics for {model}",
    )
    link = run_uri if "://" in run_uri else f"file://{run_uri}"
    create_link_artifact(
        key=f"{model}-run-folder",
        link=link,
        link_text=run_uri,
        description=f"Run folder of {model}: model file, manifest, plots, profile",
    )


@task(name="publish-model-card", **TASK_OPTIONS)
def publish_card(model: str, card_markdown: str) -> None:
    create_markdown_artifact(
        key=f"{model}-model-card",
        markdown=card_markdown,
        description=f"Model card of {model}, generated from the recorded facts",
    )
