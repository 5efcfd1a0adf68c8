"""The demo champion as a BentoML 1.4 service with adaptive batching, as its docs show it.

An anchor for benchmarks/serving.py, run in its own virtual environment (BentoML pins its own
dependencies): `bentoml serve bentoml_service:GssIncome --port 8003`. The batchable API takes
a list of records: a batchable DataFrame parameter hung every request for 60 s on 1.4.40
(NOTES-serving.md). Like the other anchors it checks the file's SHA-256 before skops parses it.

Environment: BENCH_MODEL, BENCH_MODEL_SHA256, BENCH_WORKERS (default 1).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
import skops.io as sio

TRUSTED = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]


def _load(path: str, expected_sha256: str) -> Any:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SystemExit(f"{path}: SHA-256 does not match BENCH_MODEL_SHA256")
    return sio.loads(data, trusted=TRUSTED)


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")), traffic={"timeout": 60})
class GssIncome:
    def __init__(self) -> None:
        self.model = _load(os.environ["BENCH_MODEL"], os.environ["BENCH_MODEL_SHA256"])
        self.classes = [str(c) for c in self.model.classes_]

    # The docs' example waits at most 1 s; on a busy machine BentoML then answers 503 "process
    # is overloaded" to much of the load (measured), so it gets the benchmark's 10 s client timeout.
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=256, max_latency_ms=10_000)
    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probabilities = self.model.predict_proba(pd.DataFrame(rows))
        labels = self.model.classes_[probabilities.argmax(axis=1)]
        return [
            {
                "label": label.item(),
                "probabilities": dict(zip(self.classes, p.tolist(), strict=True)),
            }
            for label, p in zip(labels, probabilities, strict=True)
        ]
