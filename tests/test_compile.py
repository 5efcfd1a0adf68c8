"""The compiled form: built from the fitted pipeline, kept only when parity holds, hashed and
verified before it is parsed, and served in place of the pipeline with the same answers."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_config

from modelcycle.config import load_config
from modelcycle.data import clean, split
from modelcycle.errors import IntegrityError
from modelcycle.gate import edge_cases
from modelcycle.training import (
    CompiledModel,
    NotCompilable,
    compile_pipeline,
    compile_with_parity,
    parity_evidence,
    train,
)

MODEL = "gss-income"
# The `compile` extra: optional for users, installed in CI by `.[test]`.
needs_treelite = pytest.mark.skipif(
    importlib.util.find_spec("treelite") is None, reason="needs treelite"
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, small_parquet) -> dict[str, Any]:
    """The demo pipeline on the small sample, its holdout and the gate's edge-case rows."""
    from conftest import small_config_dict

    raw = small_config_dict(small_parquet)
    folder = tmp_path_factory.mktemp("compile")
    config = load_config(write_config(folder, raw))
    cleaned, _ = clean(pd.read_parquet(small_parquet), config)
    train_rows, holdout = split(cleaned, config)
    X = train_rows[config.features.all]
    pipeline = train(config, X, train_rows[config.target], threads=1).pipeline
    Xh = holdout[config.features.all]
    return {
        "config": config,
        "raw": raw,
        "pipeline": pipeline,
        "rows": {"holdout": Xh, **edge_cases(Xh, config)},
    }


@needs_treelite
def test_the_compiled_form_answers_as_the_pipeline_on_holdout_and_edge_rows(fitted) -> None:
    pipeline, rows = fitted["pipeline"], fitted["rows"]

    outcome = compile_with_parity(pipeline, rows, 1e-6)

    assert outcome.kept, outcome.evidence
    parity = outcome.evidence["parity"]
    assert set(parity["sets"]) == {"holdout", "missing_values", "unseen_categories", "out_of_range"}
    reloaded = CompiledModel.from_verified_bytes(outcome.data)
    X = rows["holdout"]
    np.testing.assert_array_equal(reloaded.predict(X), pipeline.predict(X))
    np.testing.assert_allclose(
        reloaded.predict_proba(X), pipeline.predict_proba(X), rtol=0, atol=1e-6
    )
    assert list(reloaded.classes_) == list(pipeline.classes_)
    # One row at a time takes the small-batch path of the encoder: the same answers.
    for i in range(5):
        np.testing.assert_allclose(
            reloaded.predict_proba(X.iloc[[i]]), pipeline.predict_proba(X.iloc[[i]]), atol=1e-6
        )
    assert compile_pipeline(pipeline).to_bytes() == outcome.data  # deterministic file


@needs_treelite
def test_parity_refuses_a_deliberately_altered_compiled_form(fitted, monkeypatch) -> None:
    pipeline, rows = fitted["pipeline"], fitted["rows"]
    honest = compile_pipeline(pipeline)
    spec = copy.deepcopy(honest.spec)
    spec["preprocessing"]["numeric"]["mean"][0] += 5.0  # age shifted by five years
    altered = CompiledModel(spec, honest._trees)

    evidence = parity_evidence(pipeline, altered, rows, 1e-6)

    assert not evidence["passed"]
    holdout = evidence["sets"]["holdout"]
    assert holdout["max_difference"] > 1e-6 and not holdout["passed"]

    # In training, the same alteration means no compiled form is kept, and the reason says so.
    import modelcycle.training._compile as compile_module

    monkeypatch.setattr(compile_module, "compile_pipeline", lambda p: altered)
    outcome = compile_with_parity(pipeline, rows, 1e-6)
    assert outcome.data is None and not outcome.kept
    assert outcome.evidence["reason"].startswith("parity failed: holdout")


@needs_treelite
def test_a_regression_pipeline_compiles_with_the_same_predictions(fitted) -> None:
    raw = copy.deepcopy(fitted["raw"])
    raw["task"], raw["target"] = "regression", "age"
    raw["features"]["numeric"] = ["prestg10", "childs"]
    raw["evaluation"] = {"primary_metric": "rmse"}
    raw["gate"], raw["monitoring"] = {}, {}
    raw["columns"].pop("high_income")
    raw["model"] = {
        "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
        "params": {"max_iter": 30},
    }
    config = fitted["config"].model_validate(raw)
    X = fitted["rows"]["holdout"].assign(age=lambda f: f["age"].fillna(40.0))
    regressor = train(config, X[config.features.all], X["age"], threads=1).pipeline

    outcome = compile_with_parity(regressor, {"holdout": X[config.features.all]}, 1e-6)

    assert outcome.kept, outcome.evidence
    compiled = CompiledModel.from_verified_bytes(outcome.data)
    assert not hasattr(compiled, "classes_")
    np.testing.assert_allclose(
        compiled.predict(X), regressor.predict(X[config.features.all]), rtol=0, atol=1e-9
    )


@needs_treelite
def test_a_pipeline_without_trees_has_no_compiled_form_and_says_why(fitted) -> None:
    raw = copy.deepcopy(fitted["raw"])
    raw["model"] = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {}}
    config = fitted["config"].model_validate(raw)
    X = fitted["rows"]["holdout"]
    y = pd.Series(fitted["pipeline"].predict(X), index=X.index)
    linear = train(config, X, y, threads=1).pipeline

    with pytest.raises(NotCompilable, match="LogisticRegression"):
        compile_pipeline(linear)
    outcome = compile_with_parity(linear, {"holdout": X}, 1e-6)
    assert not outcome.kept and "LogisticRegression" in outcome.evidence["reason"]


@needs_treelite
def test_a_compiled_file_is_parsed_only_when_its_hash_matches(fitted) -> None:
    from modelcycle.artifacts import load_compiled, sha256_bytes

    data = compile_pipeline(fitted["pipeline"]).to_bytes()
    loaded = load_compiled(data, sha256_bytes(data), "mem://model.compiled")
    assert isinstance(loaded, CompiledModel)
    changed = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(IntegrityError, match=r"mem://model\.compiled: SHA-256"):
        load_compiled(changed, sha256_bytes(data), "mem://model.compiled")


def test_without_the_runtime_training_records_why_and_keeps_no_compiled_form(
    fitted, monkeypatch
) -> None:
    import modelcycle.training._compile as compile_module

    monkeypatch.setattr(compile_module, "runtime_version", lambda: None)
    outcome = compile_with_parity(fitted["pipeline"], fitted["rows"], 1e-6)
    assert not outcome.kept and outcome.data is None
    assert "treelite is not installed" in outcome.evidence["reason"]


# -- training and serving --------------------------------------------------------------------


def _predict_in_process(
    home: Path, compiled: bool, rows: list[dict[str, Any]]
) -> tuple[str | None, list[Any]]:
    """The prediction service's app in this process (a real prediction log under `home`)."""
    from fastapi.testclient import TestClient

    from modelcycle.serving import ServeSettings, create_app

    settings = ServeSettings(
        models=[MODEL],
        insecure_no_auth=True,
        compiled=compiled,
        log_root=str(home / f"predictions-{compiled}"),
        workers=1,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        response = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows})
        assert response.status_code == 200, response.text
        facts = client.get(f"/v1/models/{MODEL}").json()
        served = app.state.service.catalog.champion(MODEL)
        assert facts["lineage"]["compiled_form"] == served.compiled
        return served.compiled, response.json()["predictions"]


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))  # a missing value is sent as null


@needs_treelite
@pytest.mark.usefixtures("prefect_harness")
def test_training_keeps_a_verified_compiled_form_and_the_service_answers_the_same(
    small_config, state, tmp_path
) -> None:
    from flows.training import training
    from modelcycle.registry import Registry, open_run
    from modelcycle.reports import read_card_facts, render_card
    from modelcycle.serving import load_served

    raw = yaml.safe_load(small_config.read_text())
    raw["model"]["compile"] = {"enabled": True}
    outcome = training(config_path=str(write_config(tmp_path, raw, "compiled.yaml")))

    record = Registry(state.registry_url).get_version(MODEL, outcome["version"])
    manifest = open_run(record).manifest
    summary = manifest["compiled_form"]
    assert summary["kept"] and summary["runtime"] == "treelite"
    assert manifest["files"]["model.compiled"]["sha256"] == summary["sha256"]
    assert summary["parity"]["holdout"]["differing_labels"] == 0
    card = render_card(read_card_facts(record))
    assert "## Compiled form" in card and summary["sha256"] in card

    holdout = pd.read_parquet(raw["data"]["source"]).sample(40, random_state=1)
    rows = _json_rows(holdout[load_config(small_config).features.all])
    rows[0] = {**rows[0], "prestg10": None, "wrkstat": None}  # missing values
    rows[1] = {**rows[1], "occrecode": "never seen"}
    runtime, fast = _predict_in_process(tmp_path, True, rows)
    plain_runtime, plain = _predict_in_process(tmp_path, False, rows)

    assert runtime == f"treelite {summary['runtime_version']}" and plain_runtime is None
    assert [p["label"] for p in fast] == [p["label"] for p in plain]
    for a, b in zip(fast, plain, strict=True):
        assert a["probabilities"].keys() == b["probabilities"].keys()
        for key in a["probabilities"]:
            assert a["probabilities"][key] == pytest.approx(b["probabilities"][key], abs=1e-9)

    # A compiled file changed after registration refuses the version, as a changed model would.
    path = Path(record.artifact_uri) / "model.compiled"
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(IntegrityError, match=r"model\.compiled"):
        load_served(record, "refuse", use_compiled=True)
