"""`modelcycle config`: the schema, and a config file checked and shown as a run would see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelcycle.cli._console import console, fail
from modelcycle.errors import ModelcycleError

if TYPE_CHECKING:
    from modelcycle.config import PipelineConfig

config_app = typer.Typer(help="Pipeline configuration files.", no_args_is_help=True)

ConfigArgument = Annotated[Path, typer.Argument(help="Pipeline config YAML.")]


def _loaded(path: Path) -> PipelineConfig:
    from modelcycle.config import load_config

    try:
        return load_config(path)
    except ModelcycleError as exc:
        fail(str(exc))


def resolved_yaml(config: PipelineConfig) -> str:
    """What a run records: bases merged in and every schema default written out, in the
    schema's key order so it reads like the file."""
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of a pipeline config."""
    from modelcycle.config import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))


@config_app.command("validate")
def config_validate(path: ConfigArgument) -> None:
    """Check a config as a run would, without a Prefect server: the schema, the estimator (the
    same checks as training) and, when the data source can be read, every declared column,
    type, range and category. Every problem is listed, one line each; then the resolved config."""
    config = _loaded(path)
    problems, data_note = config_problems(config)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        fail(f"{path}: {len(problems)} problem(s) stop this config from running:\n{listed}")
    console.print(f"{path}: valid ({config.name}, {config.task})", highlight=False)
    console.print(f"data: {data_note}", highlight=False, markup=False)
    print(resolved_yaml(config), end="")


def config_problems(config: PipelineConfig) -> tuple[list[str], str]:
    """What would stop a run before training starts, and what was checked of the data."""
    from modelcycle.training import build_pipeline

    problems = []
    try:
        build_pipeline(config)
    except ModelcycleError as exc:
        problems.append(str(exc))
    data_problems, data_note = _data_problems(config)
    return problems + data_problems, data_note


def _data_problems(config: PipelineConfig) -> tuple[list[str], str]:
    """The source read and judged as the training flow's first steps would; a source this
    machine cannot reach is said, not counted as a problem (it may live on the worker)."""
    from modelcycle import data
    from modelcycle.settings import get_settings

    if config.data.is_demo:
        source = get_settings().data_dir / data.DEMO_FILE
        if not source.is_file():
            return [], "the demo table is prepared by the first run; not checked"
    else:
        source = Path(config.data.source)
        if not source.is_file():
            return [], f"{source} is not reachable from here; columns not checked"
    try:
        loaded = data.load_source(config, source)
        violations = data.validation_violations(loaded.table, config, loaded.duplicated)
        if not violations:
            cleaned, _ = data.clean(loaded.table, config, loaded.duplicated)
            data.split(cleaned, config)
    except ModelcycleError as exc:
        return [line.strip() for line in str(exc).splitlines() if line.strip()], ""
    if violations:
        return [f"{source}: {violation}" for violation in violations], ""
    return [], f"{len(loaded.table)} rows of {source} checked against every declared column"


@config_app.command("show")
def config_show(path: ConfigArgument) -> None:
    """Print the config as a run resolves it (after `extends:`, with every default), as YAML."""
    print(resolved_yaml(_loaded(path)), end="")
