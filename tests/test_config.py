"""Pipeline configs: every file in configs/ validates; every mistake names its key and file."""

from __future__ import annotations

import copy
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, demo_config_dict, write_config
from pydantic import BaseModel
from typer.testing import CliRunner

from modelcycle.artifacts import config_hash
from modelcycle.config import (
    PipelineConfig,
    TrainingOverrides,
    apply_overrides,
    config_json_schema,
    load_config,
    parse_config,
)
from modelcycle.errors import ConfigError
from modelcycle.training import resolve_estimator

CONFIG_FILES = sorted((REPO / "configs").glob("*.yaml"))
RESOLVED = json.loads((REPO / "tests" / "fixtures" / "resolved-configs.json").read_text())
"""Each shipped config as it resolved before the files were layered: config and hash."""


def _broken(tmp_path: Path, change) -> Path:
    """The demo config with one change applied, written to a file."""
    raw = demo_config_dict()
    change(raw)
    return write_config(tmp_path, raw)


def _config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# --- contract: shipped configs ------------------------------------------------------------


def test_configs_folder_is_not_empty() -> None:
    assert REPO / "configs" / "demo.yaml" in CONFIG_FILES


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, PipelineConfig)
    # Every metric the config names must be computable for its task, in one ordered list.
    assert config.metrics[0] == config.evaluation.primary_metric
    assert len(config.metrics) == len(set(config.metrics))
    # ...and an importable estimator that can do the configured task.
    estimator = resolve_estimator(config.model.estimator, config)
    assert estimator.__name__ == config.model.estimator.rpartition(".")[2]


def test_demo_config_values_survive_validation() -> None:
    raw = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())  # the file as written
    config = load_config(REPO / "configs" / "demo.yaml")
    assert config.name == raw["name"]
    assert config.task.value == raw["task"]
    assert config.data.is_demo
    assert config.features.numeric == raw["features"]["numeric"]
    assert config.features.categorical == raw["features"]["categorical"]
    assert config.model.params == raw["model"]["params"]
    assert config.split.strategy == raw["split"]["strategy"]
    assert dict(config.gate.floors) == raw["gate"]["floors"]
    # PII is read by nobody: it is not among the columns the pipeline uses.
    assert not set(raw["pii_columns"]) & set(config.used_columns)


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_shipped_configs_resolve_to_what_they_were_before_layering(name: str) -> None:
    # The demo's model bytes and config hash must not move when a file is rewritten shorter.
    resolved = load_config(REPO / "configs" / name).model_dump(mode="json")
    assert resolved == RESOLVED[name]["config"]
    assert config_hash(resolved) == RESOLVED[name]["config_hash"]


def test_the_approval_demo_is_the_demo_with_a_reviewer() -> None:
    variant = yaml.safe_load((REPO / "configs" / "demo-approval.yaml").read_text())
    assert variant["extends"] == "demo.yaml"
    demo = _demo().model_dump(mode="json")
    approval = load_config(REPO / "configs" / "demo-approval.yaml").model_dump(mode="json")
    assert approval["gate"].pop("approval") == {**demo["gate"].pop("approval"), "mode": "required"}
    assert approval["monitoring"].pop("retrain_mode") == "scratch"
    demo["monitoring"].pop("retrain_mode")
    assert approval == demo


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _restated_defaults(
    stated: dict[str, Any], model: type[BaseModel], where: str = ""
) -> list[str]:
    """Keys a file sets to the value the schema would give them anyway."""
    found = []
    for key, value in stated.items():
        field = model.model_fields[key]
        if typing.get_origin(field.annotation) is dict:  # e.g. columns: name -> ColumnSchema
            entry = _model_of(typing.get_args(field.annotation)[1])
            for name, item in value.items() if entry is not None else ():
                found += _restated_defaults(item, entry, f"{where}{key}.{name}.")
            continue
        section = _model_of(field.annotation)
        if section is not None and isinstance(value, dict):
            found += _restated_defaults(value, section, f"{where}{key}.")
            continue
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        if value == default:
            found.append(where + key)
    return found


BASE_FILES = [p for p in CONFIG_FILES if "extends" not in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("path", BASE_FILES, ids=lambda p: p.name)
def test_a_base_config_states_only_what_differs_from_the_schema(path: Path) -> None:
    assert _restated_defaults(yaml.safe_load(path.read_text()), PipelineConfig) == []


def test_restated_defaults_are_found() -> None:
    stated = {
        "split": {"strategy": "time", "seed": 42},
        "columns": {"age": {"type": "numeric", "max_invalid_share": 0.0}},
        "gate": {"approval": {"mode": "never"}, "floors": {"roc_auc": 0.7}},
    }
    restated = ["split.seed", "columns.age.max_invalid_share", "gate.approval.mode"]
    assert _restated_defaults(stated, PipelineConfig) == restated


# --- extends: variants layered over a base ---------------------------------------------------


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _base(folder: Path) -> Path:
    return _write(folder / "base.yaml", demo_config_dict())


def _resolved(path: Path) -> dict[str, Any]:
    return load_config(path).model_dump(mode="json")


def test_a_variant_overrides_one_nested_key_and_keeps_the_rest(tmp_path: Path) -> None:
    _base(tmp_path)
    variant = _write(
        tmp_path / "variant.yaml",
        {"extends": "base.yaml", "gate": {"robustness": {"noise": 0.1}}},
    )
    expected = demo_config_dict()
    expected["gate"]["robustness"]["noise"] = 0.1
    assert _resolved(variant) == expected


def test_lists_and_scalars_replace_and_null_unsets(tmp_path: Path) -> None:
    _base(tmp_path)
    variant = _write(
        tmp_path / "variant.yaml",
        {
            "extends": "base.yaml",
            "limitations": ["One line."],
            "evaluation": {"extra_metrics": ["accuracy"]},
            "model": {"search": None},
            "gate": {
                "budgets": {"max_latency_ms_per_1000": None},
                "fairness": {"max_tpr_gap": None},
            },
        },
    )
    config = load_config(variant)
    assert config.limitations == ["One line."]
    assert config.evaluation.extra_metrics == ["accuracy"]
    assert config.model.search is None
    assert config.gate.budgets.max_latency_ms_per_1000 is None
    assert config.gate.budgets.max_model_mb == 20  # the sibling the variant did not name
    assert config.gate.fairness.max_tpr_gap is None  # None, not the schema's 0.2
    assert config.model.params == demo_config_dict()["model"]["params"]


def test_a_chain_of_two_resolves_the_deepest_base_first(tmp_path: Path) -> None:
    _base(tmp_path / "base")
    _write(
        tmp_path / "team" / "middle.yaml",
        {"extends": "../base/base.yaml", "split": {"seed": 7}, "gate": {"floors": {"f1": 0.3}}},
    )
    top = _write(
        tmp_path / "top.yaml",
        {"extends": "team/middle.yaml", "split": {"seed": 9}, "owner": "someone@example.org"},
    )
    expected = demo_config_dict()
    expected["split"]["seed"] = 9
    expected["owner"] = "someone@example.org"
    expected["gate"]["floors"]["f1"] = 0.3
    assert _resolved(top) == expected


def test_a_cycle_is_refused_naming_both_files(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.yaml", {**demo_config_dict(), "extends": "two.yaml"})
    two = _write(tmp_path / "two.yaml", {"extends": "one.yaml", "owner": "x@example.org"})
    message = _config_error(one)
    assert str(one) in message and str(two) in message
    assert "cycle" in message
    assert "\n" not in message


def test_a_config_extending_itself_is_a_cycle(tmp_path: Path) -> None:
    path = _write(tmp_path / "self.yaml", {**demo_config_dict(), "extends": "self.yaml"})
    message = _config_error(path)
    assert str(path) in message and "cycle" in message


def test_a_missing_base_is_refused_naming_the_variant_and_the_base(tmp_path: Path) -> None:
    variant = _write(tmp_path / "variant.yaml", {"extends": "bases/nowhere.yaml", "owner": "x"})
    message = _config_error(variant)
    assert str(variant) in message
    assert str(tmp_path / "bases" / "nowhere.yaml") in message
    assert "not found" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", [3, ["base.yaml"], {"path": "base.yaml"}, None, ""])
def test_extends_must_be_a_path(tmp_path: Path, value: Any) -> None:
    _base(tmp_path)
    variant = _write(tmp_path / "variant.yaml", {"extends": value, "owner": "x@example.org"})
    message = _config_error(variant)
    assert str(variant) in message
    assert "extends" in message and "path" in message


def test_a_variant_hashes_like_the_equivalent_flat_file(tmp_path: Path) -> None:
    _base(tmp_path)
    variant = _write(
        tmp_path / "variant.yaml",
        {"extends": "base.yaml", "gate": {"approval": {"mode": "required"}}},
    )
    flat = demo_config_dict()
    flat["gate"]["approval"] = {"mode": "required"}
    flat_path = _write(tmp_path / "flat.yaml", flat)
    # The run's lineage hashes the validated config's JSON dump (tasks/lineage.py).
    assert "extends" not in _resolved(variant)
    assert config_hash(_resolved(variant)) == config_hash(_resolved(flat_path))
    assert load_config(variant) == load_config(flat_path)


def test_a_mistake_in_a_variant_names_the_variant_and_its_base(tmp_path: Path) -> None:
    base = _base(tmp_path)
    variant = _write(tmp_path / "variant.yaml", {"extends": "base.yaml", "split": {"sed": 7}})
    message = _config_error(variant)
    assert str(variant) in message and str(base) in message
    assert "split.sed" in message and "unknown key" in message


def test_a_broken_base_is_named(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("name: gss-income\nsplit: strategy: time\n", encoding="utf-8")
    variant = _write(tmp_path / "variant.yaml", {"extends": "base.yaml", "owner": "x"})
    message = _config_error(variant)
    assert str(base) in message and "line 2" in message


def test_a_relative_data_path_is_relative_to_the_file_that_states_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = demo_config_dict()
    raw["data"]["source"] = "../data/table.parquet"
    _write(tmp_path / "configs" / "base" / "base.yaml", raw)
    variant = _write(
        tmp_path / "configs" / "variant.yaml",
        {"extends": "base/base.yaml", "data": {"format": "parquet"}},
    )
    moved = _write(
        tmp_path / "configs" / "moved.yaml",
        {"extends": "base/base.yaml", "data": {"source": "table.csv"}},
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("configs") / "variant.yaml")
    assert Path(config.data.source) == (tmp_path / "configs" / "data" / "table.parquet").resolve()
    assert config.data.format == "parquet"
    assert load_config(variant).data.source == config.data.source
    assert Path(load_config(moved).data.source) == (tmp_path / "configs" / "table.csv").resolve()


def test_a_mapping_with_extends_is_not_parsed_without_its_file() -> None:
    with pytest.raises(ConfigError, match="extends"):
        parse_config({**demo_config_dict(), "extends": "demo.yaml"}, "run parameters")


def test_cli_config_validate_resolves_the_base() -> None:
    from modelcycle.cli import app

    path = REPO / "configs" / "demo-approval.yaml"
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


# --- mistakes name the key and the file ----------------------------------------------------


def test_unknown_top_level_key_is_named_with_the_file(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw.update(owners="typo@example.org"))
    message = _config_error(path)
    assert str(path) in message
    assert "owners" in message
    assert "unknown key" in message


def test_unknown_nested_key_is_named_with_its_full_location(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw["split"].update(sed=7))
    message = _config_error(path)
    assert str(path) in message
    assert "split.sed" in message


def test_wrong_value_type_names_the_key_the_file_and_the_value(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw["split"].update(test_share="lots"))
    message = _config_error(path)
    assert str(path) in message
    assert "split.test_share" in message
    assert "lots" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def two_mistakes(raw: dict[str, Any]) -> None:
        raw["split"]["sed"] = 7
        raw["model"]["fine_tune"]["extra_iterations"] = "many"

    message = _config_error(_broken(tmp_path, two_mistakes))
    assert "split.sed" in message
    assert "model.fine_tune.extra_iterations" in message


def test_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: gss-income\nowner: someone\nsplit: strategy: time\n", encoding="utf-8")
    message = _config_error(path)
    assert str(path) in message
    assert "YAML" in message
    assert "line 3" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "pipeline.yaml"
    message = _config_error(path)
    assert str(path) in message
    assert "not found" in message


def test_a_yaml_list_at_the_top_level_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: gss-income\n", encoding="utf-8")
    assert str(path) in _config_error(path)


def test_metric_not_valid_for_the_task_is_refused(tmp_path: Path) -> None:
    # rmse is a regression metric; the demo is binary classification.
    path = _broken(tmp_path, lambda raw: raw["evaluation"].update(primary_metric="rmse"))
    message = _config_error(path)
    assert str(path) in message
    assert "evaluation.primary_metric" in message
    assert "rmse" in message


def test_gate_floor_on_a_foreign_metric_is_refused(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw["gate"]["floors"].update(r2=0.5))
    message = _config_error(path)
    assert "gate.floors" in message
    assert "r2" in message


def test_stratified_split_on_regression_is_refused(tmp_path: Path) -> None:
    def regression(raw: dict[str, Any]) -> None:
        raw["task"] = "regression"
        raw["target"] = "realrinc"
        raw["columns"].pop("high_income")
        raw["split"]["strategy"] = "stratified"
        raw["model"] = {"estimator": "sklearn.linear_model.Ridge"}
        raw["evaluation"] = {"primary_metric": "rmse"}
        raw["gate"] = {"floors": {}}

    message = _config_error(_broken(tmp_path, regression))
    assert "stratified" in message
    assert "split" in message


def test_same_regression_with_a_random_split_is_accepted(tmp_path: Path) -> None:
    raw = demo_config_dict()
    raw["task"] = "regression"
    raw["target"] = "realrinc"
    raw["columns"].pop("high_income")
    raw["split"]["strategy"] = "random"
    raw["model"] = {"estimator": "sklearn.linear_model.Ridge"}
    raw["evaluation"] = {"primary_metric": "rmse", "extra_metrics": ["mae", "r2"]}
    raw["gate"] = {"floors": {"rmse": 30000.0}}
    config = load_config(write_config(tmp_path, raw))
    assert not config.maximize
    assert config.metrics == ["rmse", "mae", "r2"]


def test_pii_column_used_as_feature_is_refused(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw["features"]["numeric"].append("respondent_id"))
    message = _config_error(path)
    assert "pii_columns" in message
    assert "respondent_id" in message


def test_target_listed_as_a_feature_is_refused(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw["features"]["numeric"].append("high_income"))
    assert "high_income" in _config_error(path)


def test_min_above_max_is_refused(tmp_path: Path) -> None:
    path = _broken(tmp_path, lambda raw: raw["columns"]["age"].update(min=90, max=18))
    message = _config_error(path)
    assert "columns.age" in message


# --- overrides -----------------------------------------------------------------------------


def _demo() -> PipelineConfig:
    return load_config(REPO / "configs" / "demo.yaml")


def test_overrides_none_returns_the_config_unchanged() -> None:
    config = _demo()
    assert apply_overrides(config, None) == config


def test_estimator_params_are_merged_over_the_configured_ones() -> None:
    config = _demo()
    changed = apply_overrides(config, TrainingOverrides(estimator_params={"max_iter": 7}))
    expected = {**demo_config_dict()["model"]["params"], "max_iter": 7}
    assert changed.model.params == expected
    assert config.model.params["max_iter"] != 7  # the original is untouched


def test_seed_override_reaches_the_split_and_the_estimator() -> None:
    changed = apply_overrides(_demo(), TrainingOverrides(seed=123))
    assert changed.split.seed == 123
    assert changed.model.params["random_state"] == 123


def test_skip_search_removes_the_search() -> None:
    assert _demo().model.search is not None
    assert apply_overrides(_demo(), TrainingOverrides(skip_search=True)).model.search is None


def test_overrides_are_validated_again() -> None:
    # A bad override must fail like a bad file, naming where it came from.
    bad = TrainingOverrides(estimator_params={"max_iter": 7}, time_range={"start": 1990.0})
    raw = demo_config_dict()
    raw.pop("time_column")
    raw["split"]["strategy"] = "random"
    raw["data"].pop("time_range")
    raw["columns"].pop("year")
    config = parse_config(raw)
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, bad, "run overrides")
    assert "run overrides" in str(info.value)
    assert "time_range" in str(info.value)


def test_bad_seed_type_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        TrainingOverrides.model_validate({"seed": "lots"})
    # Even an override built without validation cannot slip a bad seed into the config.
    unchecked = TrainingOverrides.model_construct(seed="lots")
    with pytest.raises(ConfigError) as info:
        apply_overrides(_demo(), unchecked, "run overrides")
    assert "split.seed" in str(info.value)
    assert "run overrides" in str(info.value)


def test_overrides_keep_a_limit_the_config_leaves_null() -> None:
    # An unrelated override must not bring back the default of a limit the file set to null.
    raw = demo_config_dict()
    raw["gate"]["fairness"]["max_tpr_gap"] = None
    config = parse_config(raw)
    changed = apply_overrides(config, TrainingOverrides(seed=5))
    assert changed.gate.fairness.max_tpr_gap is None
    assert changed.model_dump(exclude={"split", "model"}) == config.model_dump(
        exclude={"split", "model"}
    )


def test_override_data_source_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    changed = apply_overrides(_demo(), TrainingOverrides(data_source="new.csv"))
    assert changed.data.source == str((tmp_path / "new.csv").resolve())


# --- schema and paths ----------------------------------------------------------------------


def test_json_schema_lists_every_top_level_key_of_the_demo() -> None:
    schema = config_json_schema()
    assert set(demo_config_dict()) <= set(schema["properties"])
    for key in ("name", "owner", "task", "data", "target", "features", "model", "evaluation"):
        assert key in schema["required"]
    json.dumps(schema)  # serialisable as it is


def test_relative_data_path_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    raw = demo_config_dict()
    raw["data"]["source"] = "../data/table.parquet"
    path = write_config(folder, raw)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert Path(config.data.source) == (tmp_path / "data" / "table.parquet").resolve()
    # Loaded through a relative path as well.
    monkeypatch.chdir(tmp_path)
    relative = load_config(Path("configs") / path.name)
    assert relative.data.source == config.data.source


def test_demo_source_is_not_turned_into_a_path() -> None:
    assert _demo().data.source == "demo"


def test_config_is_frozen() -> None:
    config = _demo()
    with pytest.raises(ValueError):
        config.name = "other"  # type: ignore[misc]


def test_parse_config_does_not_mutate_its_input() -> None:
    raw = demo_config_dict()
    before = copy.deepcopy(raw)
    parse_config(raw)
    assert raw == before


# --- CLI -----------------------------------------------------------------------------------


def test_cli_config_schema_prints_valid_json() -> None:
    from modelcycle.cli import app

    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads(json.dumps(config_json_schema()))
    assert "properties" in printed


def test_cli_config_validate_reports_the_key_and_exits_non_zero(tmp_path: Path) -> None:
    from modelcycle.cli import app

    path = _broken(tmp_path, lambda raw: raw["split"].update(sed=7))
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code != 0
    assert "split.sed" in result.output


# --- known bugs ----------------------------------------------------------------------------


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: gss-income\ndescription: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_every_split_problem_is_reported_at_once(tmp_path: Path) -> None:
    def two_split_problems(raw: dict[str, Any]) -> None:
        raw["task"] = "regression"
        raw["target"] = "realrinc"
        raw["columns"].pop("high_income")
        raw["columns"].pop("year")
        raw.pop("time_column")  # data.time_range is still set
        raw["split"]["strategy"] = "stratified"
        raw["model"] = {"estimator": "sklearn.linear_model.Ridge"}
        raw["evaluation"] = {"primary_metric": "rmse"}
        raw["gate"] = {"floors": {}}

    message = _config_error(_broken(tmp_path, two_split_problems))
    assert "stratified" in message
    assert "time_range" in message
