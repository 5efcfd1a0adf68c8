"""`modelcycle init`: a first pipeline config written from a data file, checked before it is
written, so the file a user starts from validates, trains and monitors as it is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelcycle.cli._console import console, errors, fail
from modelcycle.config import TaskType
from modelcycle.errors import ModelcycleError

if TYPE_CHECKING:
    from modelcycle.data import InferredConfig


def init(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet file to infer the schema from.")],
    target: Annotated[str, typer.Option(help="The column to predict.")],
    output: Annotated[
        str | None,
        typer.Option(help="Where to write the config (default: NAME.yaml here; - for stdout)."),
    ] = None,
    task: Annotated[
        TaskType | None, typer.Option(help="The task (default: guessed from the target).")
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="The column that says when a row happened.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: from the file).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output file.")] = False,
) -> None:
    """Write a commented pipeline config inferred from a data file."""
    from modelcycle.config import parse_config
    from modelcycle.data import config_name, infer_config, render_config

    target_path = None if output == "-" else Path(output or f"{name or config_name(data)}.yaml")
    if target_path is not None and target_path.exists() and not force:
        fail(f"{target_path}: already exists; choose another --output or pass --force")
    folder = (target_path or Path("out.yaml")).resolve().parent
    source = os.path.relpath(data.resolve(), folder) if output != "-" else str(data.resolve())
    try:
        inferred = infer_config(
            data, target, source=source, name=name, task=task, time_column=time_column
        )
        text = render_config(inferred)
        # The written file must be one the schema accepts; relative to where it will live.
        parse_config({**inferred.raw, "data": {"source": str(data.resolve())}}, "inferred")
    except ModelcycleError as exc:
        fail(str(exc))
    if target_path is None:
        print(text, end="")
        return
    _write_new(target_path, text, force)
    console.print(f"{target_path}: written ({inferred.raw['task']}, {_summary(inferred)})")
    console.print(f"check it with: modelcycle config validate {target_path}", highlight=False)


def _summary(inferred: InferredConfig) -> str:
    features = inferred.raw["features"]
    parts = [f"{len(features['numeric'])} numeric", f"{len(features['categorical'])} categorical"]
    if inferred.pii_suggestions:
        parts.append(f"{len(inferred.pii_suggestions)} possibly personal left out")
    if inferred.sensitive_suggestions:
        parts.append(f"{len(inferred.sensitive_suggestions)} possibly sensitive to confirm")
    return ", ".join(parts)


def _write_new(path: Path, text: str, force: bool) -> None:
    """Written whole or not at all: a temporary file renamed into place."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        if not force and path.exists():
            raise FileExistsError(path)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        errors.print(f"error: {path}: cannot write: {exc}", highlight=False, markup=False)
        raise typer.Exit(code=1) from None
