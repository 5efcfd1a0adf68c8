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
    """Check a config file against the schema without running anything, then show it resolved."""
    config = _loaded(path)
    console.print(f"{path}: valid ({config.name}, {config.task})", highlight=False)
    print(resolved_yaml(config), end="")


@config_app.command("show")
def config_show(path: ConfigArgument) -> None:
    """Print the config as a run resolves it (after `extends:`, with every default), as YAML."""
    print(resolved_yaml(_loaded(path)), end="")
