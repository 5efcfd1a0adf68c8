"""`modelcycle train`: one run of the training flow, refused before the run when the config
or its overrides are wrong."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelcycle.cli._console import check_configured_server, console, embedded_server_settings, fail
from modelcycle.config import TrainingMode, TrainingOverrides
from modelcycle.errors import ModelcycleError


def check_run_config(config_path: str, overrides: TrainingOverrides) -> None:
    """The checks the flow's first task makes, run here so a bad config leaves no flow run."""
    from modelcycle.config import apply_overrides, load_config
    from modelcycle.training import build_pipeline

    config = load_config(config_path)
    build_pipeline(apply_overrides(config, overrides, f"{config_path} (with run overrides)"))


def run_training(
    config_path: str, mode: TrainingMode, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Run the flow in this process (a temporary Prefect server if none is configured)."""
    from modelcycle.cli._runtime import prepare_prefect_env

    parsed = TrainingOverrides.model_validate(overrides or {})
    check_configured_server()
    prepare_prefect_env()
    from flows.training import training

    check_run_config(config_path, parsed)
    with embedded_server_settings():
        return training(config_path=config_path, mode=mode, overrides=parsed)


def print_training_outcome(outcome: dict[str, Any]) -> None:
    metric = outcome["primary_metric"]
    value = outcome["metrics"].get(metric)
    console.print(
        f"[bold]{outcome['model']} v{outcome['version']}[/]: {outcome['status']} "
        f"(gate: {outcome['gate']}, {metric} {value:.4f})"
    )
    if outcome["champion_metrics"] is not None:
        old = outcome["champion_metrics"][metric]
        console.print(
            f"champion v{outcome['parent_version']} on the same holdout rows: {metric} {old:.4f}"
        )
    console.print(f"run folder: {outcome['run_folder']}", highlight=False)


def train(
    config: Annotated[str, typer.Argument(help="Pipeline config YAML.")],
    mode: Annotated[
        TrainingMode, typer.Option(help="Fit from scratch or fine-tune the champion.")
    ] = TrainingMode.scratch,
    data: Annotated[str | None, typer.Option(help="Train on this CSV/Parquet file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override split.seed.")] = None,
    skip_search: Annotated[bool, typer.Option(help="Skip the hyperparameter search.")] = False,
) -> None:
    """Run the training flow for one pipeline config."""
    overrides = {"data_source": data, "seed": seed, "skip_search": skip_search}
    try:
        print_training_outcome(run_training(config, mode, overrides))
    except ModelcycleError as exc:
        fail(str(exc))
