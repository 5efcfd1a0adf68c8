"""The training flow end to end under the Prefect test harness, on real (sampled) demo data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modelcycle.artifacts import ArtifactStore
from modelcycle.registry import Registry, VersionStatus

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _run(config: Path, **kwargs):
    from flows.training import training

    return training(config_path=str(config), **kwargs)


def _artifacts_of(flow_run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    client = get_client(sync_client=True)
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    return {a.key: a for a in found}


def test_first_run_registers_a_champion_with_a_complete_run_folder(small_config, state):
    outcome = _run(small_config)

    registry = Registry(state.registry_url)
    versions = registry.list_versions("gss-income")
    assert [v.version for v in versions] == [1]
    champion = registry.champion("gss-income")
    assert champion is not None and champion.version == 1
    assert champion.status is VersionStatus.CHAMPION
    assert outcome["version"] == 1 and outcome["status"] == "champion"

    # The manifest lists every file with hashes that match the bytes on disk.
    folder = Path(champion.artifact_uri)
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
    assert {"model.skops", "metrics.json", "profile.json", "gate.json", "slices.json"} <= on_disk
    assert {"plots/roc.png", "plots/calibration.png", "plots/confusion_matrix.png"} <= on_disk
    evidence = {
        "gate/non_inferiority.json",
        "gate/fairness.json",
        "gate/robustness.json",
        "gate/budgets.json",
        "metric_intervals.json",
        "importance.csv",
        "plots/permutation_importance.png",
        "card.json",
        "card.md",
    }
    assert evidence <= on_disk
    # Every check names an evidence file that the run folder holds.
    gate = json.loads((folder / "gate.json").read_text())
    assert {c["evidence"] for c in gate["checks"]} <= on_disk
    assert json.loads((folder / "gate/non_inferiority.json").read_text()) == {"champion": None}
    importance = (folder / "importance.csv").read_text().splitlines()
    assert importance[0].startswith("feature,importance_mean,importance_std")
    assert len(importance) == 1 + 7  # one row per feature
    assert ArtifactStore(state.artifact_store).verify("gss-income", champion.run_id) == []

    # Registry lineage agrees with the manifest and the model file.
    model_bytes = (folder / "model.skops").read_bytes()
    assert champion.model_sha256 == hashlib.sha256(model_bytes).hexdigest()
    assert champion.data_fingerprint == manifest["data_fingerprints"]["train"]
    assert champion.config_hash == manifest["config_hash"]
    assert manifest["config"]["name"] == "gss-income"
    assert "scikit-learn" in champion.package_versions
    assert champion.parent_version is None

    # The audit log tells the story: registered, then promoted.
    actions = [e.action for e in registry.audit_log("gss-income")]
    assert actions[-2:] == ["register", "promote"]


def test_prefect_artifacts_point_at_the_run(small_config, state):
    _run(small_config)
    champion = Registry(state.registry_url).champion("gss-income")
    artifacts = _artifacts_of(champion.run_id)

    assert set(artifacts) == {
        "gss-income-training-summary",
        "gss-income-metrics",
        "gss-income-run-folder",
        "gss-income-gate-report",
        "gss-income-model-card",
    }
    report = artifacts["gss-income-gate-report"].data
    for check in champion.gate["checks"]:
        assert f"| {check['name']} |" in report
    assert "no champion (first version)" in report
    card = artifacts["gss-income-model-card"].data
    assert card.startswith("# Model card: gss-income v1")
    assert "Status: **champion**" in card
    summary = artifacts["gss-income-training-summary"].data
    assert "gss-income v1: champion" in summary
    assert champion.artifact_uri in summary
    table = artifacts["gss-income-metrics"].data
    rows = json.loads(table) if isinstance(table, str) else table
    shown = {row["metric"]: float(row["candidate"]) for row in rows}
    assert shown["roc_auc"] == pytest.approx(champion.metrics["roc_auc"], abs=1e-4)
    assert champion.artifact_uri in artifacts["gss-income-run-folder"].data


def test_pii_never_reaches_the_run_folder(small_config, state, small_parquet):
    import pandas as pd

    _run(small_config)
    folder = Path(Registry(state.registry_url).champion("gss-income").artifact_uri)
    profile = json.loads((folder / "profile.json").read_text())
    assert "respondent_id" not in profile["train"]["columns"]
    ids = pd.read_parquet(small_parquet)["respondent_id"].astype(str)
    texts = [p.read_text() for p in folder.glob("*.json") if p.name != "manifest.json"]
    for text in texts:
        assert "respondent_id" not in text
    # Respondent ids are 1-5 digit numbers; none of the larger ones shows up as a value.
    distinctive = [i for i in ids if len(i) >= 5][:200]
    assert distinctive and not any(f'"{i}"' in t for t in texts for i in distinctive)


def test_second_run_is_compared_with_the_champion_on_the_same_rows(small_config, state):
    _run(small_config)
    second = _run(small_config, actor="tester")

    registry = Registry(state.registry_url)
    v2 = registry.get_version("gss-income", 2)
    assert v2.parent_version == 1
    metrics = json.loads((Path(v2.artifact_uri) / "metrics.json").read_text())
    # Same config and data: the champion scored on the candidate's holdout gives the same numbers.
    assert metrics["champion_same_rows"]["roc_auc"] == pytest.approx(
        metrics["candidate"]["roc_auc"]
    )
    assert metrics["comparison"]["roc_auc"]["difference"] == pytest.approx(0.0, abs=1e-12)
    champions = [
        v for v in registry.list_versions("gss-income") if v.status is VersionStatus.CHAMPION
    ]
    assert [v.version for v in champions] == [2]
    assert registry.get_version("gss-income", 1).status is VersionStatus.ARCHIVED
    assert second["status"] == "champion"


def test_same_config_and_data_give_the_same_model_file(small_config, tmp_path, monkeypatch):
    hashes = []
    for attempt in ("a", "b"):
        monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path / attempt))
        _run(small_config)
        from modelcycle.settings import get_settings

        hashes.append(Registry(get_settings().registry_url).champion("gss-income").model_sha256)
    assert hashes[0] == hashes[1]


def test_a_failing_gate_registers_a_rejected_candidate_and_keeps_the_champion(
    small_config, state, tmp_path
):
    import yaml

    _run(small_config)
    raw = yaml.safe_load(small_config.read_text())
    raw["gate"]["floors"]["roc_auc"] = 0.999
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(raw))
    outcome = _run(strict)

    registry = Registry(state.registry_url)
    assert outcome["status"] == "rejected" and outcome["gate"] == "reject"
    assert registry.get_version("gss-income", 2).status is VersionStatus.REJECTED
    assert registry.champion("gss-income").version == 1
    gate = registry.get_version("gss-income", 2).gate
    failed = [c for c in gate["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["floor:roc_auc"]


def test_fine_tune_continues_the_champion_and_records_its_parent(small_config, state):
    from modelcycle.artifacts import load_model
    from modelcycle.config import TimeRange, TrainingOverrides

    _run(small_config)
    registry = Registry(state.registry_url)
    v1 = registry.champion("gss-income")
    _run(
        small_config,
        mode="fine_tune",
        overrides=TrainingOverrides(time_range=TimeRange(start=1990, end=2000)),
    )
    v2 = registry.get_version("gss-income", 2)
    assert v2.parent_version == 1
    manifest = json.loads((Path(v2.artifact_uri) / "manifest.json").read_text())
    assert manifest["training_mode"] == "fine_tune"

    old = load_model(v1.model_location, v1.model_sha256)
    new = load_model(v2.model_location, v2.model_sha256)
    # The fitted preprocessing is the champion's, untouched; the estimator grew.
    old_pre, new_pre = old.named_steps["preprocess"], new.named_steps["preprocess"]
    old_imputer = old_pre.named_transformers_["numeric"].named_steps["impute"]
    new_imputer = new_pre.named_transformers_["numeric"].named_steps["impute"]
    assert (old_imputer.statistics_ == new_imputer.statistics_).all()
    assert new.named_steps["model"].n_iter_ > old.named_steps["model"].n_iter_
