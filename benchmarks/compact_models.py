"""The demo champion as a pipeline, as its compiled form and as a distilled student, same run.

    .venv/bin/python benchmarks/compact_models.py                  # ~2 min here
    .venv/bin/python benchmarks/compact_models.py --search         # with the demo's search
    .venv/bin/python benchmarks/compact_models.py --one-row 500 --batches 9

The demo pipeline (configs/demo.yaml, 1974-2000, its configured parameters; `--search` runs the
config's search as the demo does) is fitted once. From it: its compiled form
(`modelcycle.training.compile_with_parity`, kept only when parity holds), a distilled student
(`modelcycle.training.distil` with the config's `model.distillation`: by default a 50-tree
HistGradientBoosting on the teacher's probabilities over the training rows and two synthetic
neighbours of each), and the student's own compiled form. For each: the file's size, one-row
latency (median over `--one-row` different holdout rows, one call each), batch latency (the
median of `--batches` calls on 1,000 rows), holdout metrics, and agreement with the pipeline's
labels. Native threads are capped at 1 (as the service runs its predictions) and the forms are
timed interleaved, so machine load falls on all of them alike. Ratios are against the pipeline
measured in the same run. JSON goes to benchmarks/results/ (git-ignored).

Served throughput of each form: `benchmarks/serving.py --home HOME` serves a home's champion;
a champion trained with `model.compile.enabled: true` is served in its compiled form unless
MODELCYCLE_SERVE_COMPILED=false (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
BATCH_ROWS = 1000


def _median_ms(call: Callable[[], Any], repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _one_row_ms(predict: Callable[[Any], Any], X: Any, rows: int) -> float:
    predict(X.iloc[[0]])
    times = []
    for i in range(rows):
        row = X.iloc[[i % len(X)]]
        start = time.perf_counter()
        predict(row)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", action="store_true", help="Run the config's search.")
    parser.add_argument("--one-row", type=int, default=300, help="Single-row calls per form.")
    parser.add_argument("--batches", type=int, default=5, help="1,000-row calls per form.")
    args = parser.parse_args()
    os.environ.setdefault("MODELCYCLE_HOME", tempfile.mkdtemp(prefix="compact-bench-"))

    from threadpoolctl import threadpool_limits

    from modelcycle import data, training
    from modelcycle.artifacts import dump_model
    from modelcycle.config import TrainingOverrides, apply_overrides, load_config
    from modelcycle.evaluation import compute_metrics, predict_outputs
    from modelcycle.gate import edge_cases
    from modelcycle.settings import get_settings

    config = load_config(DEMO_CONFIG)
    if not args.search:
        config = apply_overrides(config, TrainingOverrides(skip_search=True))
    source = data.resolve_source(config, get_settings().data_dir)
    cleaned, _ = data.clean(data.load_source(config, source).table, config)
    train_rows, holdout = data.split(cleaned, config)
    X, y = data.features_and_target(train_rows, config)
    Xh, yh = data.features_and_target(holdout, config)

    started = time.perf_counter()
    with threadpool_limits(1):
        pipeline = training.train(
            config, X, y, 1, training.sample_weights(train_rows, config)
        ).pipeline
        fit_s = time.perf_counter() - started
        rows = {"holdout": Xh, **edge_cases(Xh, config)}
        tolerance = config.model.compile.max_proba_difference
        started = time.perf_counter()
        compiled = training.compile_with_parity(pipeline, rows, tolerance)
        compile_s = time.perf_counter() - started
        started = time.perf_counter()
        student = training.distil(pipeline, config, X, 1)
        distil_s = time.perf_counter() - started
        student_compiled = training.compile_with_parity(student.pipeline, rows, tolerance)

    forms: dict[str, tuple[Any, int]] = {
        "pipeline": (pipeline, len(dump_model(pipeline))),
        "student": (student.pipeline, len(dump_model(student.pipeline))),
    }
    for name, outcome in (("compiled", compiled), ("student compiled", student_compiled)):
        if outcome.kept:
            model = training.CompiledModel.from_verified_bytes(outcome.data)
            forms[name] = (model, len(outcome.data))
        else:
            print(f"{name}: not kept: {outcome.evidence['reason']}")
    reference = predict_outputs(pipeline, Xh, config)

    results: dict[str, dict[str, Any]] = {}
    with threadpool_limits(1):
        for name, (model, size) in forms.items():
            outputs = predict_outputs(model, Xh, config)
            results[name] = {
                "bytes": size,
                "metrics": compute_metrics(yh, outputs, config),
                "agreement": float((outputs.pred == reference.pred).mean()),
                "one_row_ms": [],
                "batch_ms": [],
            }
        batch = Xh.sample(n=BATCH_ROWS, replace=len(Xh) < BATCH_ROWS, random_state=0)
        for _ in range(3):  # interleaved rounds: load on the machine hits every form alike
            for name, (model, _) in forms.items():
                results[name]["one_row_ms"].append(
                    _one_row_ms(model.predict_proba, Xh, args.one_row // 3)
                )
                results[name]["batch_ms"].append(
                    _median_ms(lambda m=model: m.predict_proba(batch), args.batches)
                )
    base = results["pipeline"]
    lines = [
        f"demo pipeline ({'with' if args.search else 'without'} search): fitted in {fit_s:.1f} s,"
        f" compiled in {compile_s:.2f} s, distilled in {distil_s:.1f} s "
        f"({student.rows['train']} rows + {student.rows['neighbours']} neighbours); "
        f"holdout {len(Xh)} rows; load average {os.getloadavg()[0]:.1f}",
        "",
        f"{'form':<18}{'MB':>8}{'x size':>8}{'1 row ms':>10}{'x':>7}{'1000 rows ms':>14}{'x':>7}"
        f"{'roc_auc':>9}{'accuracy':>10}{'agree':>8}",
    ]
    for r in results.values():
        r["one_row_ms"] = statistics.median(r["one_row_ms"])
        r["batch_ms"] = statistics.median(r["batch_ms"])
    for name, r in results.items():
        lines.append(
            f"{name:<18}{r['bytes'] / 1e6:>8.3f}{r['bytes'] / base['bytes']:>8.2f}"
            f"{r['one_row_ms']:>10.3f}{r['one_row_ms'] / base['one_row_ms']:>7.2f}"
            f"{r['batch_ms']:>14.1f}{r['batch_ms'] / base['batch_ms']:>7.2f}"
            f"{r['metrics']['roc_auc']:>9.4f}{r['metrics']['accuracy']:>10.4f}"
            f"{r['agreement']:>8.4f}"
        )
    print("\n".join(lines))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"compact_models-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "python": sys.version.split()[0],
                "load_average": os.getloadavg(),
                "compiled": compiled.evidence,
                "student": {"name": student.student, "params": student.params, **student.rows},
                "student_compiled": student_compiled.evidence,
                "forms": results,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
