"""`modelcycle docs` and `modelcycle models score`: the technical documentation (EU AI Act
Annex IV headings) and the ML Test Score of a version, from its checked records."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelcycle.cli._console import (
    MAX_RECORD_ID,
    console,
    fail,
    open_incident_log,
    open_registry,
)
from modelcycle.errors import ModelcycleError

if TYPE_CHECKING:  # reports import the monitoring stack: seconds a `--help` should not pay
    from modelcycle.registry import ModelVersion, Registry
    from modelcycle.reports import VersionRecords


class DocFormat(StrEnum):
    md = "md"
    html = "html"


def chosen_version(registry: Registry, name: str, version: int | None) -> ModelVersion:
    """The version asked for; without one, the champion, else the latest."""
    if version is not None:
        return registry.get_version(name, version)
    record = registry.champion(name)
    if record is None:
        versions = registry.list_versions(name)
        if not versions:
            raise ModelcycleError(f"model {name!r} has no versions yet")
        record = versions[-1]
    return record


def version_records(name: str, version: int | None) -> VersionRecords:
    """Every record of the version, checked; `prefect.yaml` is read from the current folder
    (where the deployments are declared and `prefect deploy` is run)."""
    from modelcycle.reports import collect_records

    registry = open_registry()
    record = chosen_version(registry, name, version)
    log = open_incident_log()
    incidents = log.list(name) if log is not None else []
    chain = registry.verify_audit(name)[0]
    return collect_records(record, registry.audit_log(name), chain, incidents, Path.cwd())


def test_score_section(name: str, version: int) -> str:
    """The card's ML Test Score section, scored from the records as they stand now."""
    from modelcycle.reports import ml_test_score, test_score_markdown

    result = ml_test_score(version_records(name, version))
    return "\n".join(["", "## ML Test Score (Breck et al. 2017)", *test_score_markdown(result)])


_VERSION = typer.Argument(
    min=1, max=MAX_RECORD_ID, help="Version (default: the champion, else the latest)."
)


def docs(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, _VERSION] = None,
    fmt: Annotated[DocFormat, typer.Option("--format", help="md or html.")] = DocFormat.md,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of printing.")
    ] = None,
) -> None:
    """Technical documentation after the EU AI Act's Annex IV: every statement cites its
    evidence file and SHA-256 (checked); what the records cannot show is listed as missing."""
    from modelcycle.reports import (
        ml_test_score,
        render_html,
        render_markdown,
        technical_documentation,
    )

    try:
        records = version_records(name, version)
        doc = technical_documentation(records, ml_test_score(records))
    except ModelcycleError as exc:
        fail(str(exc))
    text = render_html(doc) if fmt is DocFormat.html else render_markdown(doc)
    if output is None:
        print(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"written: {output}", highlight=False)


def score(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, _VERSION] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """The ML Test Score (Breck et al. 2017) of a version: 28 tests scored 0, 0.5 or 1 from the
    records, with the evidence of each; the final score is the minimum of the four sections."""
    from modelcycle.reports import ml_test_score, test_score_markdown

    try:
        result = ml_test_score(version_records(name, version))
    except ModelcycleError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(test_score_markdown(result)))


def bom(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, _VERSION] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of printing.")
    ] = None,
) -> None:
    """The model card as a CycloneDX 1.6 ML-BOM (JSON): a machine-learning-model component
    with its modelCard and file hash, and the recorded package versions as components."""
    from modelcycle.reports import cyclonedx_bom, ml_test_score

    try:
        records = version_records(name, version)
        document = cyclonedx_bom(records, ml_test_score(records))
    except ModelcycleError as exc:
        fail(str(exc))
    text = json.dumps(document, indent=2)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"written: {output}", highlight=False)
