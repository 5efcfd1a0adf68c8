"""The demo champion behind FastAPI, written the way a user writes it: a pydantic body per row,
`predict_proba` on a DataFrame made from it, `uvicorn app:app --workers N`.

An anchor for benchmarks/serving.py, not part of modelcycle: it logs nothing, has no auth and
does not follow the registry. The only thing it adds to the tutorial version is the SHA-256
check before skops parses the file (the benchmark hands it the hash the registry recorded).

    BENCH_MODEL=path/to/model.skops BENCH_MODEL_SHA256=... uvicorn fastapi_app:app --port 8001
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import skops.io as sio
from fastapi import FastAPI
from pydantic import BaseModel

TRUSTED = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]


def _load(path: str, expected_sha256: str):
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SystemExit(f"{path}: SHA-256 does not match BENCH_MODEL_SHA256")
    return sio.loads(data, trusted=TRUSTED)


class Respondent(BaseModel):
    age: float | None = None
    prestg10: float | None = None
    childs: float | None = None
    occrecode: str | None = None
    wrkstat: str | None = None
    educcat: str | None = None
    maritalcat: str | None = None


class Batch(BaseModel):
    rows: list[Respondent]


model = _load(os.environ["BENCH_MODEL"], os.environ["BENCH_MODEL_SHA256"])
app = FastAPI()


def _answer(frame: pd.DataFrame) -> list[dict]:
    probabilities = model.predict_proba(frame)
    labels = model.classes_[probabilities.argmax(axis=1)]
    return [
        {
            "label": label.item(),
            "probabilities": dict(zip(map(str, model.classes_), p.tolist(), strict=True)),
        }
        for label, p in zip(labels, probabilities, strict=True)
    ]


@app.post("/predict")
async def predict(respondent: Respondent) -> dict:
    return _answer(pd.DataFrame([respondent.model_dump()]))[0]


@app.post("/predict_batch")
async def predict_batch(batch: Batch) -> list[dict]:
    return _answer(pd.DataFrame([row.model_dump() for row in batch.rows]))
