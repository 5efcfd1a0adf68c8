"""One audited world for the record-keeping tests: a model trained by the real training flow
(v1 from scratch, v2 fine-tuned from it, on a data file of the test's own), served by a real
`modelcycle serve` process that answered a few rows, with feedback for one of them."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from conftest import small_config_dict, write_config
from serving_support import start_service

MODEL = "gss-income"
ERASED = "S-ERASE-ME"


@dataclass
class AuditedWorld:
    home: Path
    config: Path
    source: Path
    prediction_ids: list[str]
    feedback_id: str
    erase_id: str  # answered for subject ERASED, whose subject key the log pseudonymises

    @property
    def registry_url(self) -> str:
        return f"sqlite:///{self.home / 'registry.db'}"

    @property
    def log_root(self) -> Path:
        return self.home / "predictions"


def build_world(folder: Path, small_parquet: Path) -> Iterator[AuditedWorld]:
    """Train, serve, predict; MODELCYCLE_HOME points at the world while it is in use."""
    from flows.training import training

    home = folder / "state"
    source = folder / "income.parquet"
    shutil.copyfile(small_parquet, source)
    raw = small_config_dict(small_parquet)
    raw["data"]["source"] = str(source)
    raw["gate"]["budgets"].pop("max_latency_ms_per_1000")
    raw["gate"]["non_inferiority"]["bootstrap"] = 200
    raw["gate"]["robustness"]["rows"] = 500
    raw["evaluation"]["importance_repeats"] = 2
    raw["model"].pop("balance")
    raw["subject_keys"] = ["subject_id"]
    config = write_config(folder, raw)
    previous = os.environ.get("MODELCYCLE_HOME")
    os.environ["MODELCYCLE_HOME"] = str(home)
    try:
        training(config_path=str(config))
        training(config_path=str(config), mode="fine_tune")
        token = secrets.token_urlsafe(16)
        service = start_service(home, token, {"MODELCYCLE_SERVE_PSEUDONYMISE_SUBJECT_KEYS": "true"})
        try:
            service.wait_ready()
            rows = _rows(source, raw, 4)
            for i, row in enumerate(rows):
                row["subject_id"] = ERASED if i == 3 else f"S-{i}"
            with service.client() as client:
                answer = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows[:3]})
                assert answer.status_code == 200, answer.text
                ids = [p["id"] for p in answer.json()["predictions"]]
                other = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows[3:]})
                assert other.status_code == 200, other.text
                erase_id = other.json()["predictions"][0]["id"]
                sent = client.post(
                    f"/v1/models/{MODEL}/feedback", json=[{"id": ids[0], "label": 1}]
                )
                assert sent.status_code in (200, 202), sent.text
        finally:
            service.stop()
        # One monitoring window of the champion (its own training file: labels included).
        from flows.monitoring import monitoring

        monitoring(model_name=MODEL, window=str(source), config_path=str(config))
        yield AuditedWorld(home, config, source, ids, ids[0], erase_id)
    finally:
        if previous is None:
            os.environ.pop("MODELCYCLE_HOME", None)
        else:
            os.environ["MODELCYCLE_HOME"] = previous


def _rows(source: Path, raw: dict[str, Any], n: int) -> list[dict[str, Any]]:
    features = raw["features"]["numeric"] + raw["features"]["categorical"]
    frame = pd.read_parquet(source)[features].head(n)
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def cli(*args: str) -> tuple[int, str]:
    """Run the command in this process (the world's MODELCYCLE_HOME); exit code and standard
    output (Prefect's log of a flow the command runs goes to standard error)."""
    from typer.testing import CliRunner

    from modelcycle.cli._app import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


def cli_json(*args: str) -> Any:
    code, output = cli(*args)
    assert code == 0, output
    return json.loads(output)
