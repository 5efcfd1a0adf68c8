"""`modelcycle demo`: the whole loop on the demo model, told through the other commands.

The only place that knows the demo's config, model and survey years; the generic commands it
calls are given them explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli._console import console, fail
from modelcycle.cli._incidents import list_incidents
from modelcycle.cli._models import audit, card_text, list_models, run_governance_flow
from modelcycle.cli._monitor import print_monitoring_outcome, run_monitoring
from modelcycle.cli._train import print_training_outcome, run_training
from modelcycle.config import TrainingMode
from modelcycle.errors import ModelcycleError

DEMO_CONFIG = "configs/demo.yaml"
# Survey years the demo's second run fine-tunes on; later years stay unseen for monitoring.
DEMO_FINE_TUNE_YEARS = (2002.0, 2006.0)
# Survey years kept back from training; the GSS ran every two years then.
DEMO_WINDOW_YEARS = [2008, 2010, 2012, 2014, 2016, 2018]


def demo(
    config: Annotated[str, typer.Option(help="Demo pipeline config.")] = DEMO_CONFIG,
    monitor: Annotated[
        bool, typer.Option(help="Then monitor the unseen years 2008-2018, one window each.")
    ] = True,
) -> None:
    """The lifecycle on the demo model: train, judge a fine-tuned challenger with every gate
    check, roll back, retire, show the audit log and a model card per version, then monitor
    the unseen years."""
    try:
        console.rule("1. train from scratch on 1974-2000")
        first = run_training(config, TrainingMode.scratch, None)
        print_training_outcome(first)
        start, end = DEMO_FINE_TUNE_YEARS
        console.rule(f"2. fine-tune the champion on {start:.0f}-{end:.0f}, judged by the gate")
        second = run_training(
            config, TrainingMode.fine_tune, {"time_range": {"start": start, "end": end}}
        )
        print_training_outcome(second)
        model = second["model"]
        if second["status"] == "champion":
            console.rule("3. roll back to the first champion, then retire the challenger")
            run_governance_flow(
                "rollback",
                model_name=model,
                reason="demo: go back to the champion trained on 1974-2000",
                actor="demo",
            )
        else:
            console.rule("3. the challenger was rejected; retire it")
        run_governance_flow(
            "retirement",
            model_name=model,
            version=second["version"],
            reason="demo: fine-tuned on 2002-2006 only; superseded",
            actor="demo",
        )
    except ModelcycleError as exc:
        fail(str(exc))
    console.rule("audit log")
    audit(model, as_json=False)
    console.rule("registry")
    list_models(as_json=False)
    for outcome in (first, second):
        path = _write_card(model, outcome["version"])
        console.print(f"model card of v{outcome['version']}: {path}", highlight=False)
    console.print(f"print one with: modelcycle models card {model} VERSION", highlight=False)
    if monitor:
        try:
            _monitor_unseen_years(model)
        except ModelcycleError as exc:
            fail(str(exc))


def _write_card(name: str, version: int) -> Path:
    """The card as of now, next to the registry (the run folder keeps the training-time one)."""
    from modelcycle.settings import get_settings

    folder = get_settings().home / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-v{version}.md"
    path.write_text(card_text(name, version), encoding="utf-8")
    return path


def _monitor_unseen_years(model: str) -> None:
    """The demo's last act: the unseen survey years arrive one window at a time."""
    from modelcycle.data import write_year_windows
    from modelcycle.settings import get_settings

    paths = write_year_windows(get_settings().data_dir, DEMO_WINDOW_YEARS)
    for path in paths:
        console.rule(f"monitor {path.name}")
        print_monitoring_outcome(run_monitoring(model, str(path)))
    console.rule("incidents")
    list_incidents(as_json=False)
