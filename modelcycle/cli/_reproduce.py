"""`modelcycle models reproduce`: re-run a version's recorded training in a temporary registry
and artifact store, and compare the model file's hash with the registered one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from modelcycle.cli._audit import cli_actor
from modelcycle.cli._console import MAX_RECORD_ID, console, fail, open_registry, styled
from modelcycle.errors import ModelcycleError

if TYPE_CHECKING:
    from modelcycle.records import Reproduction
    from modelcycle.registry import Registry


@contextmanager
def _scratch_state(folder: Path) -> Iterator[str]:
    """The registry and artifact store point into `folder` while the re-run runs; the state
    folder (and so the prepared demo data) stays the user's."""
    from modelcycle.settings import ARTIFACT_STORE_ENV, REGISTRY_URL_ENV

    saved = {k: os.environ.get(k) for k in (REGISTRY_URL_ENV, ARTIFACT_STORE_ENV)}
    url = f"sqlite:///{folder / 'registry.db'}"
    os.environ[REGISTRY_URL_ENV] = url
    os.environ[ARTIFACT_STORE_ENV] = str(folder / "artifacts")
    try:
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def reproduce_version(name: str, version: int) -> dict[str, Any]:
    """Re-run and compare; the temporary store is removed afterwards."""
    from modelcycle.cli._console import check_configured_server, embedded_server_settings
    from modelcycle.cli._runtime import prepare_prefect_env
    from modelcycle.records import (
        check_recorded_parts,
        compare,
        parent_registration,
        rerun_config,
    )
    from modelcycle.registry import Registry, VersionStatus, open_run

    registry = open_registry()
    original = registry.get_version(name, version)
    run = open_run(original)  # the recorded config is read only through a verified manifest
    config, notes = rerun_config(run)
    check_recorded_parts(config, registry.audit_log(name), f"{name} v{version}")
    mode = str(run.manifest.get("training_mode") or "scratch")
    parent = (
        registry.get_version(name, original.parent_version)
        if original.parent_version is not None
        else None
    )
    if mode == "fine_tune" and parent is None:
        raise ModelcycleError(f"{name} v{version}: recorded as a fine-tune but with no parent")
    check_configured_server()
    prepare_prefect_env()
    from flows.training import training

    with tempfile.TemporaryDirectory(prefix="modelcycle-reproduce-") as scratch:
        folder = Path(scratch)
        config_path = folder / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        with _scratch_state(folder) as url:
            scratch_registry = Registry(url)
            if mode == "fine_tune" and parent is not None:
                copy = scratch_registry.register_version(
                    parent_registration(parent),
                    status=VersionStatus.CANDIDATE,
                    actor="reproduce",
                    reason=f"parent v{parent.version} of {name} v{version}",
                )
                scratch_registry.promote(
                    name, copy.version, actor="reproduce", reason="the recorded parent"
                )
            with embedded_server_settings():
                outcome = training(
                    config_path=str(config_path), mode=mode, actor="modelcycle-reproduce"
                )
            again = scratch_registry.get_version(name, outcome["version"])
            again_manifest = open_run(again).manifest
            scratch_registry.close()
        result = compare(original, run.manifest, again, again_manifest, notes)
    _record(registry, result)
    return result.to_dict()


def _record(registry: Registry, result: Reproduction) -> None:
    """The outcome goes in the audit log: the ML Test Score's "training is reproducible" is
    scored from it, and an auditor sees when and by whom a version was re-run."""
    verdict = "identical model file" if result.identical else "a different model file"
    registry.append_audit(
        actor=cli_actor(),
        action="reproduce",
        model_name=result.model,
        version=result.version,
        reason=f"re-ran the recorded training: {verdict}",
        details={
            "identical": result.identical,
            "reproduced_sha256": result.reproduced_sha256,
            "differences": [d.what for d in result.differences],
        },
    )


def reproduce(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(min=1, max=MAX_RECORD_ID, help="Version number.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Re-run a version's recorded training (config, data, seed, mode, parent) in a temporary
    store and compare model file hashes; exit 1 when they differ, listing what changed."""
    try:
        result = reproduce_version(name, version)
    except ModelcycleError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print(result)
    if not result["identical"]:
        raise typer.Exit(code=1)


def _print(result: dict[str, Any]) -> None:
    head = f"{result['model']} v{result['version']} ({result['mode']})"
    if result["identical"]:
        console.print(
            styled(
                (head, "bold"),
                ": reproduced, identical model file ",
                (result["reproduced_sha256"], "green"),
            ),
            highlight=False,
        )
    else:
        console.print(
            styled(
                (head, "bold"),
                ": ",
                ("NOT identical", "bold red"),
                f" (recorded {result['recorded_sha256']}, re-run {result['reproduced_sha256']})",
            ),
            highlight=False,
        )
    for d in result["differences"]:
        console.print(
            f"  differs: {d['what']}: recorded {d['recorded']}, now {d['now']}", highlight=False
        )
    if not result["identical"] and not result["differences"]:
        console.print(
            "  no recorded input differs: training is not deterministic here", highlight=False
        )
    for metric, value in result["recorded_metrics"].items():
        again = result["reproduced_metrics"].get(metric)
        console.print(f"  {metric}: recorded {value}, re-run {again}", highlight=False)
    for note in result["notes"]:
        console.print(f"  note: {note}", highlight=False)
