"""The demo's loop chapter, end to end: a real `modelcycle serve` process answers two unseen
years, their labels go back as feedback, the training flow fine-tunes the champion on that
labelled log, the gate decides, and a second service answers the next year. Then the
fine-tuned version is reproduced after the log moved on (the next year, and late answers
inside its range): only the parts its lineage recorded give the same model.

Each year is cut to a fixed sample so the chapter takes a minute, not several; checked from the
registry, the run's manifest and the prediction log, not from the console.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from serving_support import free_port

from modelcycle.data import DEMO_FILE

MODEL = "gss-income"
ROWS_PER_YEAR = 400
LATE = 20  # answers inside the retrained version's range that reach the log after it trained


def test_the_loop_chapter_retrains_on_the_labelled_log_serves_the_next_year_and_reproduces(
    state, prefect_harness, small_config: Path, demo_parquet: Path, monkeypatch
) -> None:
    from modelcycle.artifacts import ArtifactStore
    from modelcycle.cli import _demo
    from modelcycle.registry import Registry
    from modelcycle.serving import read_feedback, read_predictions

    state.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_parquet, state.data_dir / DEMO_FILE)
    # v1 through the training flow: monitoring on the log needs the reference it stores.
    first = _demo.run_training(str(small_config), _demo.TrainingMode.scratch, None)
    assert (first["version"], first["status"]) == (1, "champion")
    monkeypatch.setattr(_demo, "_free_port", free_port)
    whole_year = _demo._survey_year

    def sample(config: str, year: int, context: bool = False):
        rows, labels = whole_year(config, year, context)
        return rows[:ROWS_PER_YEAR], labels[:ROWS_PER_YEAR]

    monkeypatch.setattr(_demo, "_survey_year", sample)

    _demo._loop_chapter(MODEL, str(small_config))

    registry = Registry(state.registry_url)
    try:
        candidate = registry.get_version(MODEL, 2)
        champion = registry.champion(MODEL).version
    finally:
        registry.close()
    assert candidate.parent_version == 1  # fine-tuned from the champion, on the log
    manifest = ArtifactStore(state.artifact_store).read_manifest(
        MODEL, candidate.run_id, candidate.manifest_sha256
    )
    lineage = manifest.get("metadata", manifest)["prediction_log"]
    # Both loop years, every row labelled: the training and holdout rows of the candidate.
    assert lineage["labelled_rows"] == 2 * ROWS_PER_YEAR and lineage["only"] is True
    # ... started by the drift that monitoring found on the log: the range it judged, closed.
    from modelcycle.monitoring import WindowHistory, history_path

    windows = WindowHistory(history_path(state.home, MODEL)).load()
    judged = windows[0]
    assert judged.status == "drift", judged
    assert (lineage["since"], lineage["until"]) == (judged.since, judged.until)
    assert lineage["until"] is not None
    root = state.home / "predictions"
    for part in lineage["parts"]:
        assert Path(part["path"]).is_relative_to(root)

    log = read_predictions(str(root), MODEL)
    champion_rows = log.loc[log["role"] == "champion"]
    years = champion_rows.groupby("input.year")["version"].agg(set).to_dict()
    first, second = _demo.DEMO_LOOP_YEARS
    assert years[first] == {1} and years[second] == {1}
    assert years[_demo.DEMO_NEXT_YEAR] == {champion}  # the gate's choice answers the next year
    assert champion_rows["input.gender"].notna().all()  # context logged for the retraining
    feedback = read_feedback(str(root), MODEL)
    assert feedback["id"].isin(champion_rows["id"]).all()
    assert len(feedback) == 3 * ROWS_PER_YEAR
    assert set(champion_rows["input.year"]) == {first, second, _demo.DEMO_NEXT_YEAR}
    # Monitoring read the two served years from the log, labels included, before retraining.
    assert [w.rows() for w in windows[:1]] == [2 * ROWS_PER_YEAR]
    assert windows[0].labelled() == 2 * ROWS_PER_YEAR
    # The retrained version answers with the same classes (0/1, not 0.0/1.0).
    scores = {c for c in log.columns if c.startswith("output.probabilities.")}
    assert scores == {"output.probabilities.0", "output.probabilities.1"}, scores

    # Reproduce v2 once the log has moved on: the next year was served and labelled into the
    # same day's partitions, and answers inside v2's range arrive late (a worker's segment still
    # open when v2 trained, compacted since). Read as it is now, the range holds more labelled
    # rows than v2 learned from; the re-run reads only the parts its lineage recorded.
    from modelcycle.cli._reproduce import reproduce_version
    from modelcycle.config import parse_config
    from modelcycle.data import read_labelled_log

    in_range = champion_rows.loc[champion_rows["input.year"] == first].head(LATE)
    _log_late(root, in_range, feedback.set_index("id")["label"])
    recorded = parse_config(manifest["config"], "v2's config")
    now = read_labelled_log(recorded, recorded.data.prediction_log)
    assert now.labelled == lineage["labelled_rows"] + LATE
    assert {p.path for p in now.parts} > {p["path"] for p in lineage["parts"]}

    result = reproduce_version(MODEL, 2)
    assert result["identical"] is True, result["differences"]
    assert result["reproduced_sha256"] == candidate.model_sha256
    differing = {d["what"] for d in result["differences"]}
    assert not {"config hash", "data fingerprint (train)", "data fingerprint (holdout)"} & differing
    registry = Registry(state.registry_url)
    try:  # the re-run's registry was temporary: the user's holds the loop's versions only
        assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
    finally:
        registry.close()


def _log_late(root: Path, rows: pd.DataFrame, labels: pd.Series) -> None:
    """The same requests as `rows`, answered at their times under new ids by another worker,
    with their labels; compacted now, after the training that could not see them."""
    from modelcycle.serving import IdFactory, PredictionLog, compact

    ids = IdFactory().new_ids(len(rows))
    records, feedback = [], []
    for identifier, (_, row) in zip(ids, rows.iterrows(), strict=True):
        records.append(
            {
                "id": identifier,
                "time": row["time"].isoformat(),
                "model": MODEL,
                "version": int(row["version"]),
                "request_id": f"late-{identifier}",
                "role": "champion",
                "inputs": {
                    c[len("input.") :]: _plain(row[c]) for c in row.index if c.startswith("input.")
                },
                "outputs": {"label": _plain(row["output.label"])},
                "latency_ms": 1.0,
                "flags": [],
            }
        )
        feedback.append(
            {
                "id": identifier,
                "label": _plain(labels[row["id"]]),
                "time": row["time"].isoformat(),
                "model": MODEL,
            }
        )
    with PredictionLog(str(root), "late-worker") as log:
        log.submit_predictions(records).result(timeout=60)
        log.submit_feedback(feedback).result(timeout=60)
    report = compact(str(root), MODEL)
    assert not report.refused and any(s.startswith("late-worker-") for s in report.segments)


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
