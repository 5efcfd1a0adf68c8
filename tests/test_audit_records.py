"""What an auditor asks, answered from the records of a model trained by the real training
flow and served by a real service: trace a prediction, reproduce a version, the technical
documentation, the ML Test Score, the CycloneDX export, the event log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_support import MODEL, AuditedWorld, build_world, cli, cli_json

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, small_parquet: Path, prefect_harness: None
) -> Iterator[AuditedWorld]:
    yield from build_world(tmp_path_factory.mktemp("audited"), small_parquet)


def _hops(trace: dict) -> dict[str, dict]:
    return {h["hop"]: h for h in trace["hops"]}


def test_trace_walks_every_hop_of_a_served_prediction(world: AuditedWorld) -> None:
    trace = cli_json("trace", world.feedback_id, "--json")
    hops = _hops(trace)
    assert list(hops) == [
        "prediction",
        "version",
        "run folder",
        "config",
        "data",
        "code",
        "packages",
        "parents",
        "gate",
        "approvals",
        "audit",
    ]
    # The fine-tuned v2 was champion when the service answered.
    assert trace["model"] == MODEL and trace["version"] == 2
    assert hops["prediction"]["feedback"] == 1
    assert hops["parents"]["parents"][0]["version"] == 1
    assert hops["data"]["recomputed"] == hops["data"]["fingerprints"]
    gate = hops["gate"]
    assert gate["decision"] == "promote" and len(gate["checks"]) > 5
    actions = [e["action"] for e in hops["audit"]["entries"]]
    assert "register" in actions and "promote" in actions
    for name in ("prediction", "version", "run folder", "config", "data", "packages", "gate"):
        assert hops[name]["status"] == "verified", hops[name]


def test_trace_names_the_break_when_a_run_file_was_altered(world: AuditedWorld) -> None:
    from modelcycle.registry import Registry

    version = Registry(world.registry_url).get_version(MODEL, 2)
    altered = Path(version.artifact_uri) / "slices.json"
    original = altered.read_bytes()
    altered.write_bytes(original.replace(b"0.", b"0.9", 1))
    try:
        code, output = cli("trace", world.feedback_id)
    finally:
        altered.write_bytes(original)
    assert code == 1
    broken = [line for line in output.splitlines() if line.strip().startswith("broken")]
    assert len(broken) == 1 and "run folder" in broken[0] and "slices.json" in broken[0]


def test_trace_names_the_break_when_the_training_data_changed(world: AuditedWorld) -> None:
    import pandas as pd

    original = world.source.read_bytes()
    frame = pd.read_parquet(world.source)
    frame.loc[frame.index[0], "age"] = frame["age"].max()
    frame.to_parquet(world.source, index=False)
    try:
        trace = cli_json_allowing_failure("trace", world.prediction_ids[1], "--json")
    finally:
        world.source.write_bytes(original)
    data = _hops(trace)["data"]
    assert data["status"] == "broken" and "data source changed" in data["detail"]
    assert _hops(trace)["run folder"]["status"] == "verified"


def test_trace_of_an_unknown_id_says_it_is_missing(world: AuditedWorld) -> None:
    code, output = cli("trace", "01a22e5c-3926-70d3-9ab7-25624df1cc81")
    assert code == 1 and "missing" in output and "no prediction with id" in output


def cli_json_allowing_failure(*args: str) -> dict:
    import json

    code, output = cli(*args)
    assert code in (0, 1), output
    return json.loads(output)


def test_reproduce_gives_the_same_model_file_for_a_fine_tuned_version(
    world: AuditedWorld,
) -> None:
    from modelcycle.registry import Registry

    recorded = Registry(world.registry_url).get_version(MODEL, 2)
    result = cli_json("models", "reproduce", MODEL, "2", "--json")
    assert result["mode"] == "fine_tune"
    assert result["identical"] is True
    assert result["reproduced_sha256"] == recorded.model_sha256
    assert not [d for d in result["differences"] if d["what"].startswith("data")]
    assert result["reproduced_metrics"] == result["recorded_metrics"]
    # Only the user's registry holds versions: the re-run's store was temporary.
    assert [v.version for v in Registry(world.registry_url).list_versions(MODEL)] == [1, 2]


def test_reproduce_names_the_data_when_the_source_changed(world: AuditedWorld) -> None:
    import pandas as pd

    original = world.source.read_bytes()
    frame = pd.read_parquet(world.source)
    frame.iloc[::7].to_parquet(world.source, index=False)  # a seventh of the rows left
    try:
        result = cli_json_allowing_failure("models", "reproduce", MODEL, "1", "--json")
    finally:
        world.source.write_bytes(original)
    assert result["identical"] is False
    changed = {d["what"] for d in result["differences"]}
    assert {"data fingerprint (train)", "data fingerprint (holdout)"} <= changed
    assert set(result["recorded_metrics"]) == set(result["reproduced_metrics"])
    assert result["recorded_metrics"] != result["reproduced_metrics"]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_docs_have_every_annex_iv_heading_with_citations_whose_hashes_check(
    world: AuditedWorld,
) -> None:
    import re

    from modelcycle.reports import HEADINGS

    code, text = cli("docs", MODEL, "2")
    assert code == 0, text
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert headings == list(HEADINGS)
    cited = re.findall(r"(/[^ ;\]]+) \(sha256 ([0-9a-f]{64})\)", text)
    files = {path: sha for path, sha in cited if Path(path).is_file()}
    assert len(files) >= 8  # manifest, gate, metrics, slices, fairness, robustness, budgets...
    for path, sha in files.items():
        assert _sha256(Path(path)) == sha, path
    assert "UNVERIFIED" not in text
    assert "Missing from the records:" in text  # what the records cannot show is listed


def test_docs_name_an_altered_file_as_unverified(world: AuditedWorld) -> None:
    from modelcycle.registry import Registry

    version = Registry(world.registry_url).get_version(MODEL, 2)
    altered = Path(version.artifact_uri) / "slices.json"
    original = altered.read_bytes()
    altered.write_bytes(original + b" ")
    try:
        code, text = cli("docs", MODEL, "2")
    finally:
        altered.write_bytes(original)
    assert code == 0
    assert "Records that do not verify" in text and "slices.json" in text
    assert "slices.json (UNVERIFIED" in text


def test_html_docs_escape_recorded_text(world: AuditedWorld) -> None:
    from modelcycle.registry import Registry

    Registry(world.registry_url).append_audit(
        actor="test",
        action="note",
        model_name=MODEL,
        version=2,
        reason="<script>alert('x')</script> & <b>bold</b>",
    )
    code, page = cli("docs", MODEL, "2", "--format", "html")
    assert code == 0
    assert "<script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_ml_test_score_of_the_champion_cites_evidence_for_every_point(
    world: AuditedWorld,
) -> None:
    score = cli_json("models", "score", MODEL, "--json")
    tests = score["tests"]
    assert len(tests) == 28
    for section in ("data", "model", "infrastructure", "monitoring"):
        mine = [t for t in tests if t["test"].startswith(section + "-")]
        assert len(mine) == 7
        assert score["sections"][section] == sum(t["score"] for t in mine)
    assert score["final"] == min(score["sections"].values())
    for t in tests:
        assert t["score"] in (0, 0.5, 1)
        if t["score"]:
            assert t["evidence"] and all(e["verified"] for e in t["evidence"]), t
        else:
            assert t["how"].startswith("not recorded")
    by_key = {t["test"]: t for t in tests}
    assert by_key["model-6"]["score"] == 1  # slice floors judged by the gate
    # The world's monitoring window: schema and skew checked, realised quality judged.
    for key in ("monitoring-2", "monitoring-3", "monitoring-7", "model-2"):
        assert by_key[key]["score"] == 1, by_key[key]
        assert "/monitoring/" in by_key[key]["evidence"][0]["path"]
    assert by_key["data-3"]["score"] == 0  # per-feature cost is not measured
    # A reproduction by hand (the reproduce test above, when it ran) is documented, not
    # automated: half a point, only with an audit entry saying the file was identical.
    from modelcycle.registry import Registry

    reproduced = [
        e
        for e in Registry(world.registry_url).audit_log(MODEL)
        if e.action == "reproduce" and e.version == 2 and e.details["identical"]
    ]
    assert by_key["infrastructure-1"]["score"] == (0.5 if reproduced else 0)


def test_a_test_whose_evidence_is_missing_scores_zero(world: AuditedWorld) -> None:
    from modelcycle.registry import Registry
    from modelcycle.reports import collect_records, ml_test_score

    registry = Registry(world.registry_url)
    version = registry.get_version(MODEL, 2)
    records = collect_records(
        version, registry.audit_log(MODEL), registry.verify_audit(MODEL)[0], []
    )
    before = {t.key: t.score for t in ml_test_score(records).tests}
    assert before["data-2"] == 1 and before["infrastructure-5"] == 1
    del records.files["importance.csv"]
    after = {t.key: t for t in ml_test_score(records).tests}
    assert after["data-2"].score == 0 and after["infrastructure-5"].score == 0
    assert after["model-6"].score == 1  # the others stand


def test_cyclonedx_ml_bom_validates_against_the_cyclonedx_schema(world: AuditedWorld) -> None:
    import json

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from modelcycle.registry import Registry

    text = cli("models", "bom", MODEL, "2")[1]
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    error = validator.validate_str(text)
    assert error is None, error.data.message
    bom = json.loads(text)
    recorded = Registry(world.registry_url).get_version(MODEL, 2)
    models = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert len(models) == 1
    model = models[0]
    assert model["hashes"] == [{"alg": "SHA-256", "content": recorded.model_sha256}]
    metrics = {m["type"] for m in model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]}
    assert set(recorded.metrics) <= metrics
    libraries = {c["name"]: c["version"] for c in bom["components"] if c["type"] == "library"}
    assert libraries["scikit-learn"] == recorded.package_versions["scikit-learn"]
    # The validator is not a rubber stamp: a BOM without its format is refused.
    del bom["bomFormat"]
    assert validator.validate_str(json.dumps(bom)) is not None


def test_records_export_holds_every_kind_of_event_in_the_period(world: AuditedWorld) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    code, text = cli("records", "export")
    assert code == 0, text
    events = [json.loads(line) for line in text.splitlines()]
    kinds = {e["type"] for e in events}
    assert {"prediction", "feedback", "usage", "audit"} <= kinds
    predictions = [e for e in events if e["type"] == "prediction"]
    assert set(world.prediction_ids) <= {e["id"] for e in predictions}
    assert all(e["version"] == 2 and "inputs" not in e for e in predictions)
    (usage,) = [e for e in events if e["type"] == "usage"]
    assert usage["predictions"] == len(predictions) and usage["version"] == 2
    assert [e["id"] for e in events if e["type"] == "feedback"] == [world.feedback_id]
    times = [e["time"] for e in events]
    assert times == sorted(times)
    # A period that ends before anything happened holds nothing.
    before = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    code, empty = cli("records", "export", "--until", before)
    assert code == 0 and empty.strip() == ""
    code, _ = cli("records", "export", "--since", "last tuesday")
    assert code == 1


def test_the_service_pseudonymises_subject_keys_and_erasure_removes_one_person(
    world: AuditedWorld,
) -> None:
    from audit_support import ERASED

    from modelcycle.registry import Registry
    from modelcycle.serving import read_predictions

    logged = read_predictions(str(world.log_root), MODEL)
    keys = list(logged["input.subject_id"])
    assert len(keys) == 4 and all(k.startswith("hmac-sha256:") for k in keys)
    assert ERASED not in set(keys) and "S-0" not in set(keys)
    before = set(logged["id"])

    result = cli_json(
        "privacy", "erase", "--model", MODEL, "--where", f"subject_id={ERASED}", "--json"
    )

    assert result["predictions"] == 1 and result["complete"] is True
    left = set(read_predictions(str(world.log_root), MODEL)["id"])
    assert left == before - {world.erase_id}
    (entry,) = [e for e in Registry(world.registry_url).audit_log(MODEL) if e.action == "erasure"]
    assert ERASED not in json.dumps(entry.to_dict(), default=str)
    assert entry.details["subject"] == result["subject"]
    code, _ = cli("privacy", "erase", "--model", MODEL, "--where", "age=40")
    assert code == 1  # not a declared subject key
