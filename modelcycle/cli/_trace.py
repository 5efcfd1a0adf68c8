"""`modelcycle trace`: from one logged prediction back to the data, code, config and decisions
that made the model that answered it, each hop checked or its break named."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelcycle.cli._console import console, fail, open_registry, styled
from modelcycle.errors import ModelcycleError

_STYLE = {"verified": "green", "broken": "bold red", "missing": "bold red", "unverified": "yellow"}


def log_root() -> str:
    """Where the prediction service writes its log (its own setting, read the same way)."""
    from modelcycle.serving import read_settings

    return read_settings().resolved_log_root


def trace(
    prediction_id: Annotated[str, typer.Argument(help="The id the service answered with.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Trace a prediction: version, run folder, config, data, code, packages, parents, gate,
    approvals, audit entries. Exit 1 when a hop is broken or missing."""
    from modelcycle.records import trace_prediction
    from modelcycle.settings import get_settings

    try:
        result = trace_prediction(
            prediction_id, open_registry(), log_root(), get_settings().data_dir
        )
    except ModelcycleError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        where = f"{result.model} v{result.version}" if result.model else "not found"
        console.print(styled((f"prediction {prediction_id}", "bold"), f": {where}"))
        for hop in result.hops:
            console.print(
                styled(
                    (f"{hop.status.value:>10}", _STYLE[hop.status.value]),
                    f"  {hop.name}: {hop.detail}",
                ),
                highlight=False,
            )
            if hop.name == "gate":
                for check in hop.facts.get("checks", []):
                    verdict = (
                        ("pass" if check["passed"] else "FAIL") if check["judged"] else "not judged"
                    )
                    console.print(f"              {check['name']}: {verdict}", highlight=False)
            if hop.name == "audit":
                for e in hop.facts.get("entries", []):
                    console.print(
                        f"              #{e['id']} {e['at']} {e['actor']} {e['action']}: "
                        f"{e['reason']}",
                        highlight=False,
                    )
    if result.breaks:
        raise typer.Exit(code=1)
