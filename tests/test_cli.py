"""The command line's own rules, through Typer's runner with the registry in a temporary
MODELCYCLE_HOME: which model `monitor` watches when none is named, `config show`, and typed
options. The flows behind the commands are replaced where only the command's choice is tested.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner, Result

from modelcycle.cli import app
from modelcycle.config import TrainingMode, load_config, parse_config
from modelcycle.registry import Registration, Registry, VersionStatus

DEMO = REPO / "configs" / "demo.yaml"


def _register(registry_url: str, *models: str) -> None:
    registry = Registry(registry_url)
    try:
        for name in models:
            registration = Registration(
                model_name=name,
                owner="risk-team",
                description=f"{name} classifier",
                run_id=f"run-{name}",
                artifact_uri=f"/artifacts/{name}/run-{name}",
                model_file="model.skops",
                model_sha256="cd" * 32,
                data_fingerprint="data-fp",
                config_hash="config-hash",
                code_version="abc123",
                package_versions={},
                parent_version=None,
                metrics={"roc_auc": 0.8},
                gate={"passed": True},
            )
            registry.register_version(
                registration, status=VersionStatus.CANDIDATE, actor="trainer", reason="fixture"
            )
    finally:
        registry.close()


@pytest.fixture
def monitored(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model each monitoring run was asked for; no flow runs."""
    asked: list[str] = []

    def run_monitoring(model: str, window: str, **kwargs: Any) -> dict[str, Any]:
        asked.append(model)
        return {
            "model": model,
            "version": 1,
            "status": "ok",
            "share_drifted": 0.0,
            "drifted_columns": [],
            "reasons": [],
        }

    monkeypatch.setattr("modelcycle.cli._monitor.run_monitoring", run_monitoring)
    return asked


def _lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


# --- monitor: no demo default --------------------------------------------------------------


def test_monitor_without_model_watches_the_registry_s_only_model(state, monitored) -> None:
    _register(state.registry_url, "churn")
    result = CliRunner().invoke(app, ["monitor", "window.parquet"])
    assert result.exit_code == 0, result.output
    assert monitored == ["churn"]
    assert "monitoring churn, the only model in the registry" in result.output


@pytest.mark.parametrize("models", [("churn", "gss-income"), ()], ids=["two", "none"])
def test_monitor_without_model_asks_for_one(state, monitored, models) -> None:
    _register(state.registry_url, *models)
    result = CliRunner().invoke(app, ["monitor", "window.parquet"])
    assert result.exit_code == 1
    assert monitored == []
    (line,) = _lines(result)
    assert line.startswith("error: --model: the registry holds")
    assert all(name in line for name in models)
    assert (f"{len(models)} models" if models else "no models") in line


def test_monitor_with_model_does_not_choose(state, monitored) -> None:
    _register(state.registry_url, "churn", "gss-income")
    result = CliRunner().invoke(app, ["monitor", "window.parquet", "--model", "gss-income"])
    assert result.exit_code == 0, result.output
    assert monitored == ["gss-income"]
    assert "only model" not in result.output


# --- config show / validate ----------------------------------------------------------------


def test_config_show_prints_the_resolved_config_as_yaml() -> None:
    result = CliRunner().invoke(app, ["config", "show", str(DEMO)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["name"] == "gss-income"
    assert parse_config(shown, "shown") == load_config(DEMO)


def test_config_validate_prints_the_same_resolved_config() -> None:
    shown = CliRunner().invoke(app, ["config", "show", str(DEMO)])
    validated = CliRunner().invoke(app, ["config", "validate", str(DEMO)])
    assert validated.exit_code == 0, validated.output
    first, second, rest = validated.stdout.split("\n", 2)
    assert first == f"{DEMO}: valid (gss-income, binary_classification)"
    assert second.startswith("data: ")
    assert rest == shown.stdout


def test_config_show_names_the_file_and_key_of_a_mistake(tmp_path: Path) -> None:
    raw = load_config(DEMO).model_dump(mode="json")
    raw["split"]["sed"] = 7
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 1
    (line,) = _lines(result)
    assert str(path) in line and "split.sed" in line


# --- train: typed options ------------------------------------------------------------------


def test_train_mode_is_a_training_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    modes: list[Any] = []

    def run_training(config: str, mode: Any, overrides: Any) -> dict[str, Any]:
        modes.append(mode)
        raise SystemExit(0)

    monkeypatch.setattr("modelcycle.cli._train.run_training", run_training)
    result = CliRunner().invoke(app, ["train", str(DEMO), "--mode", "fine_tune"])
    assert result.exit_code == 0, result.output
    assert modes == [TrainingMode.fine_tune] and isinstance(modes[0], TrainingMode)


def test_train_refuses_an_unknown_mode_before_anything_runs(monkeypatch) -> None:
    monkeypatch.setattr(
        "modelcycle.cli._train.run_training", lambda *a: pytest.fail("ran with a bad mode")
    )
    result = CliRunner().invoke(app, ["train", str(DEMO), "--mode", "sideways"])
    assert result.exit_code == 2
    assert "--mode" in result.output and "sideways" in result.output


# --- shape: command groups over a shared console, no circle --------------------------------

CLI = REPO / "modelcycle" / "cli"


def _cli_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import of a sibling module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if (node.module or "").startswith("modelcycle.cli."):
            found.append((node.module.rsplit(".", 1)[1], [alias.name for alias in node.names]))
        elif node.module == "modelcycle.cli":  # `from modelcycle.cli import _app` reaches a module
            found += [(alias.name, [alias.name]) for alias in node.names]
    return found


def test_cli_modules_import_no_private_name_and_no_circle() -> None:
    graph = {p.stem: _cli_imports(p) for p in CLI.glob("_*.py")}
    for module, imports in graph.items():
        for target, names in imports:
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{module} imports {private} from {target}"

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        targets = {target for target, _ in graph.get(start, [])}
        return goal in targets or any(
            reaches(t, goal, seen | {start}) for t in targets - seen - {start}
        )

    circles = [module for module in graph if reaches(module, module)]
    assert not circles, f"import circle through {circles}"


# --- the small things: gate table, plain tables, thresholds-only files ----------------------

GATE = {
    "decision": "reject",
    "passed": False,
    "checks": [
        {
            "name": "floor:roc_auc",
            "value": 0.8123,
            "limit": 0.75,
            "comparison": ">=",
            "passed": True,
            "judged": True,
        },
        {
            "name": "robustness:noise",
            "value": 0.0731,
            "limit": 0.05,
            "comparison": "<=",
            "passed": False,
            "judged": True,
        },
        {
            "name": "non_inferiority:roc_auc",
            "value": None,
            "limit": None,
            "comparison": ">",
            "passed": True,
            "judged": False,
        },
    ],
}


def test_train_prints_the_gate_table(state, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(state.registry_url)
    try:
        registration = Registration(
            model_name="churn",
            owner="o",
            description="d",
            run_id="run-1",
            artifact_uri="/a/churn/run-1",
            model_file="model.skops",
            model_sha256="cd" * 32,
            data_fingerprint="fp",
            config_hash="h",
            code_version="c",
            package_versions={},
            parent_version=None,
            metrics={"roc_auc": 0.8123},
            gate=GATE,
        )
        registry.register_version(
            registration, status=VersionStatus.REJECTED, actor="t", reason="gate"
        )
    finally:
        registry.close()
    outcome = {
        "model": "churn",
        "version": 1,
        "status": "rejected",
        "gate": "reject",
        "primary_metric": "roc_auc",
        "metrics": {"roc_auc": 0.8123},
        "champion_metrics": None,
        "run_folder": "/a/churn/run-1",
    }
    monkeypatch.setattr("modelcycle.cli._train.run_training", lambda *a: outcome)
    result = CliRunner().invoke(app, ["train", str(DEMO)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in _lines(result)[1:5]}
    assert rows["check"] == ["value", "limit", "result"]
    assert rows["robustness:noise"] == ["0.0731", "<=", "0.05", "FAIL"]
    assert rows["non_inferiority:roc_auc"] == ["n/a", "-", "not", "judged"]
    assert "gate decision: reject" in result.output


def test_tables_are_plain_columns_when_piped(state) -> None:
    _register(state.registry_url, "a-model-with-a-rather-long-name-that-would-wrap-at-eighty")
    result = CliRunner().invoke(app, ["models", "list"])  # not a terminal
    assert result.exit_code == 0, result.output
    header, row = _lines(result)
    assert header.split() == ["model", "owner", "versions", "champion", "latest"]
    assert row.split()[0] == "a-model-with-a-rather-long-name-that-would-wrap-at-eighty"
    assert len(row) > 80 and "│" not in row  # one line, no box, not cut at 80 columns
    assert row.index("risk-team") == header.index("owner")  # aligned columns


def test_table_cells_are_never_read_as_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console
    from rich.table import Table

    from modelcycle.cli import _console

    terminal = Console(force_terminal=True, width=120, record=True)
    monkeypatch.setattr(_console, "console", terminal)
    table = Table("reason")
    table.add_row("[bold red]not markup[/]")
    _console.print_table(table)
    assert "[bold red]not markup[/]" in terminal.export_text()


def test_monitor_takes_a_file_with_only_a_monitoring_section(
    state, monitored, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    passed: list[Any] = []
    monkeypatch.setattr(
        "modelcycle.cli._monitor.run_monitoring",
        lambda model, window, **kw: (
            passed.append(kw["config_path"])
            or {
                "model": model,
                "version": 1,
                "status": "ok",
                "share_drifted": 0.0,
                "drifted_columns": [],
                "reasons": [],
            }
        ),
    )
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("monitoring:\n  drift_share: 0.3\n  warning_share: 0.1\n")
    args = ["monitor", "w.parquet", "--model", "churn", "--thresholds", str(thresholds)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert passed == [str(thresholds)]
    from modelcycle.config import load_monitoring_section

    section = load_monitoring_section(thresholds, "churn")
    assert (section.drift_share, section.warning_share) == (0.3, 0.1)


def test_a_wrong_threshold_is_refused_before_any_run(state, monitored, tmp_path: Path) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("monitoring:\n  drift_sahre: 0.3\n")
    result = CliRunner().invoke(
        app, ["monitor", "w.parquet", "--model", "churn", "--thresholds", str(thresholds)]
    )
    assert result.exit_code == 1 and monitored == []
    assert f"{thresholds}: unknown key 'monitoring.drift_sahre'" in result.output


def test_a_whole_config_of_another_model_is_refused_as_thresholds(state, monitored) -> None:
    result = CliRunner().invoke(
        app, ["monitor", "w.parquet", "--model", "churn", "--thresholds", str(DEMO)]
    )
    assert result.exit_code == 1 and monitored == []
    assert "is the config of 'gss-income', not of 'churn'" in result.output


def test_the_command_line_starts_without_the_modelling_and_monitoring_stack() -> None:
    """`modelcycle --help` and every governance command pay for what they use: before this,
    importing the CLI pulled in reports, monitoring, scipy and matplotlib (4.6 s a call; 50
    concurrent promotions spent minutes importing)."""
    import subprocess
    import sys

    probe = (
        "import sys, modelcycle.cli, flows.governance\n"
        "heavy = ('modelcycle.monitoring', 'modelcycle.reports', 'scipy', 'matplotlib', "
        "'sklearn', 'evidently')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
