"""Save the demo champion as an MLflow model folder for `mlflow models serve`.

An anchor for benchmarks/serving.py, run with the MLflow virtual environment's Python:

    python mlflow_export.py MODEL.skops SHA256 SAMPLE.json OUT_DIR

The skops file is checked against its SHA-256, loaded, and saved as MLflow's docs show it:
`mlflow.sklearn.save_model` with a signature inferred from sample input rows (a JSON list of
records) and their predicted probabilities, so the server enforces the input schema. MLflow
3.17 saves scikit-learn models with skops itself and asks for the same trusted types.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import mlflow.sklearn
import pandas as pd
import skops.io as sio
from mlflow.models import infer_signature

TRUSTED = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]


def main(model_path: str, expected_sha256: str, sample_path: str, out_dir: str) -> None:
    data = Path(model_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SystemExit(f"{model_path}: SHA-256 does not match")
    model = sio.loads(data, trusted=TRUSTED)
    sample = pd.DataFrame(json.loads(Path(sample_path).read_text()))
    signature = infer_signature(sample, model.predict_proba(sample))
    mlflow.sklearn.save_model(model, out_dir, signature=signature, skops_trusted_types=TRUSTED)


if __name__ == "__main__":
    main(*sys.argv[1:5])
