"""Bad input through the command line, as a table: configs, data, windows, parameters, model
files, registry URLs and arguments.

Every case runs one `modelcycle` command against a state folder holding a trained champion
and asserts the same four things: a non-zero exit; one line that names the file, key, column
or argument; no traceback (Prefect's console output included: the command line sends it to the
command's stderr while a flow runs); and the registry and artifact store byte for byte as they
were (a listing of every file with its SHA-256, before and after). Most cases are refused
before any flow starts; the ones found inside a flow run share the session's Prefect harness.

Below the table: one test per class of issue 10 that this part fixes (user text as markup,
data refused or accepted late, traceback walls).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from conftest import REPO, small_config_dict, write_config
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from modelcycle.registry import Registry
from modelcycle.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_harness")

MODEL = "gss-income"
TOO_BIG = "99999999999999999999"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """OpenMP spin-waits badly on a busy 2-core runner; the sample models are tiny anyway."""
    with threadpool_limits(limits=1):
        yield


def _fast(raw: dict[str, Any]) -> dict[str, Any]:
    """Few resamples and shuffles: the gate's statistics are tested elsewhere."""
    raw["gate"]["budgets"].pop("max_latency_ms_per_1000")
    raw["gate"]["non_inferiority"]["bootstrap"] = 200
    raw["gate"]["robustness"]["rows"] = 500
    raw["evaluation"]["importance_repeats"] = 2
    raw["model"].pop("balance")
    raw["monitoring"] = {"min_rows": 100}
    return raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_parquet, prefect_harness) -> Iterator[Settings]:
    """One champion every case may touch but none may change."""
    from modelcycle.settings import get_settings

    root = tmp_path_factory.mktemp("bad-input-table")
    config = write_config(root, _fast(small_config_dict(small_parquet)))
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(limits=1):
        mp.setenv("MODELCYCLE_HOME", str(root / "state"))
        from flows.training import training

        assert training(config_path=str(config))["status"] == "champion"
        yield get_settings()


@pytest.fixture
def state(trained: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MODELCYCLE_HOME", str(trained.home))
    return trained


@pytest.fixture(scope="module")
def rows(small_parquet: Path) -> pd.DataFrame:
    """Training-year rows (PII column included, as a source file has it)."""
    return pd.read_parquet(small_parquet).sample(n=600, random_state=2).reset_index(drop=True)


# --- what every case asserts ---------------------------------------------------------------


def _output(result: Result) -> str:
    """Everything printed, whether or not this click version mixes stderr into `output`."""
    try:
        stderr = result.stderr
    except ValueError:
        stderr = ""
    return result.output if stderr in result.output else result.output + stderr


def _squeezed(text: str) -> str:
    """Without whitespace and box drawing: usage errors come in a wrapped panel."""
    return "".join(c for c in text if not c.isspace() and c not in "│╭╮╰╯─")


def _error_block(output: str) -> tuple[str, str]:
    """The error's first line and everything from it on; usage errors are in typer's panel."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("error: ") or "Invalid value" in line or "No such" in line:
            return line, "\n".join(lines[i:])
    raise AssertionError(f"no error line in:\n{output}")


def listing(settings: Settings) -> dict[str, str]:
    """Every file of the state folder with its SHA-256 (the registry database, the artifact
    store with hidden staging folders), leaving out Prefect's home and the failure logs."""
    found = {}
    for path in sorted(settings.home.rglob("*")):
        relative = path.relative_to(settings.home)
        if relative.parts[0] in ("prefect", "logs"):
            continue
        found[str(relative)] = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        )
    return found


@dataclass(frozen=True)
class Call:
    """One command line and what its refusal must name (the first mention on the first line)."""

    argv: list[str]
    mentions: tuple[str, ...]
    env: dict[str, str | None] = field(default_factory=dict)
    absent: tuple[Path, ...] = ()  # paths the command must not create
    forbidden: tuple[str, ...] = ()  # text that must not be printed
    restore: Callable[[], None] | None = None


@dataclass
class Ctx:
    """What a case builds its files from."""

    tmp_path: Path
    settings: Settings
    rows: pd.DataFrame
    small_parquet: Path

    def config(self, change: Callable[[dict], Any] | None = None, data: Path | None = None) -> Path:
        raw = _fast(small_config_dict(self.small_parquet))
        if data is not None:
            raw["data"]["source"] = str(data)
        if change is not None:
            change(raw)
        return write_config(self.tmp_path, raw)

    def data(self, change: Callable[[pd.DataFrame], pd.DataFrame], name: str = "batch.csv") -> Path:
        table = change(pd.read_parquet(self.small_parquet))
        path = self.tmp_path / name
        if name.endswith(".csv"):
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
        return path

    def window(self, change: Callable[[pd.DataFrame], pd.DataFrame], name: str) -> Path:
        path = self.tmp_path / name
        table = change(self.rows)
        if name.endswith(".parquet"):
            table.to_parquet(path, index=False)
        else:
            table.to_csv(path, index=False)
        return path

    def text(self, name: str, content: str | bytes) -> Path:
        path = self.tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def champion_file(self, name: str | None = None) -> Path:
        registry = Registry(self.settings.registry_url)
        try:
            champion = registry.champion(MODEL)
            assert champion is not None
            model_file = Path(champion.model_location)
        finally:
            registry.close()
        return model_file if name is None else model_file.parent / name

    def tampered(self, path: Path, mutate: Callable[[bytes], bytes | None]) -> Callable[[], None]:
        """Change (or, with None, delete) a stored file; the returned callable puts it back."""
        original = path.read_bytes()
        changed = mutate(original)
        if changed is None:
            path.unlink()
        else:
            path.write_bytes(changed)
        return lambda: path.write_bytes(original)


def _duplicate_age_csv(ctx: Ctx, name: str, source: pd.DataFrame) -> Path:
    path = ctx.tmp_path / name
    table = source.assign(age_again=source["age"])
    header = ",".join("age" if c == "age_again" else c for c in table.columns)
    path.write_text(header + "\n" + table.to_csv(index=False, header=False), encoding="utf-8")
    return path


def _text_in_age(table: pd.DataFrame) -> pd.DataFrame:
    age = table["age"].astype(object)
    age.iloc[7] = "abc"
    return table.assign(age=age)


def _infinite(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(
        age=table["age"].where(table.index != table.index[3], np.inf),
        prestg10=table["prestg10"].where(table.index != table.index[5], -np.inf),
    )


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A change to one key of the config, by dotted path."""

    def change(raw: dict) -> None:
        *parents, last = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _no_registry_at(ctx: Ctx) -> Call:
    folder = ctx.tmp_path / "typo" / "registry-folder"
    return Call(
        ["models", "list"],
        ("MODELCYCLE_REGISTRY_URL", str(folder / "registry.db"), "no registry database"),
        env={"MODELCYCLE_REGISTRY_URL": f"sqlite:///{folder / 'registry.db'}"},
        absent=(ctx.tmp_path / "typo",),
    )


def _not_a_registry(ctx: Ctx) -> Call:
    import sqlite3

    path = ctx.tmp_path / "other.db"
    sqlite3.connect(path).close()
    return Call(
        ["models", "show", MODEL],
        ("MODELCYCLE_REGISTRY_URL", "not a modelcycle registry"),
        env={"MODELCYCLE_REGISTRY_URL": f"sqlite:///{path}"},
    )


def _extends_cycle(ctx: Ctx) -> Call:
    ctx.text("b.yaml", "extends: a.yaml\n")
    return Call(_train(ctx.text("a.yaml", "extends: b.yaml\n")), ("a.yaml", "cycle"))


def _train(config: Path, *args: str) -> list[str]:
    return ["train", str(config), *args]


def _monitor(window: Path | str, *args: str) -> list[str]:
    return ["monitor", str(window), "--model", MODEL, *args]


CASES: dict[str, Callable[[Ctx], Call]] = {
    # --- config files (refused before any flow run) ---
    "config-missing": lambda c: Call(
        _train(c.tmp_path / "nope.yaml"), (str(c.tmp_path / "nope.yaml"), "not found")
    ),
    "config-yaml-syntax": lambda c: Call(
        _train(c.text("p.yaml", "name: x\nowner: y\nsplit: strategy: time\n")),
        (str(c.tmp_path / "p.yaml"), "line 3"),
    ),
    "config-unknown-key": lambda c: Call(
        _train(c.config(_set("split.sed", 1))), ("pipeline.yaml", "split.sed", "unknown key")
    ),
    "config-wrong-type": lambda c: Call(
        _train(c.config(_set("split.test_share", "lots"))), ("pipeline.yaml", "split.test_share")
    ),
    "config-top-level-list": lambda c: Call(
        ["config", "validate", str(c.text("list.yaml", "- a\n- b\n"))], ("list.yaml", "mapping")
    ),
    "config-not-utf8": lambda c: Call(
        _train(c.text("latin.yaml", "name: caf\xe9\n".encode("latin-1"))), ("latin.yaml", "UTF-8")
    ),
    "config-extends-missing-base": lambda c: Call(
        _train(c.text("variant.yaml", "extends: base-gone.yaml\nname: x\n")),
        ("variant.yaml", "base-gone.yaml", "not found"),
    ),
    "config-extends-cycle": _extends_cycle,
    "config-name-pattern-shown-whole": lambda c: Call(
        ["config", "validate", str(c.config(_set("name", "Bad_Name")))],
        ("pipeline.yaml", "name", "^[a-z0-9][a-z0-9-]{0,62}$"),
    ),
    "config-path-with-markup": lambda c: Call(
        _train(c.tmp_path / "x[/y]" / "c.yaml"), (str(c.tmp_path / "x[/y]" / "c.yaml"),)
    ),
    "config-metric-for-another-task": lambda c: Call(
        _train(c.config(_set("evaluation.primary_metric", "rmse"))),
        ("pipeline.yaml", "evaluation.primary_metric", "rmse"),
    ),
    "config-impossible-confidence": lambda c: Call(
        _train(c.config(_set("gate.non_inferiority.confidence", 1.5))),
        ("pipeline.yaml", "gate.non_inferiority.confidence"),
    ),
    "config-category-limit-zero": lambda c: Call(
        _train(c.config(_set("features.category_limit", 0))),
        ("pipeline.yaml", "features.category_limit"),
    ),
    "config-min-frequency-not-a-count": lambda c: Call(
        _train(c.config(_set("features.min_frequency", 2.5))), ("pipeline.yaml", "min_frequency")
    ),
    # --- estimators ---
    "estimator-outside-allow-list": lambda c: Call(
        _train(c.config(_set("model.estimator", "this.Anything"))),
        ("model.estimator", "this.Anything", "allowed"),
        forbidden=("Beautiful is better than ugly",),
    ),
    "estimator-unknown-class": lambda c: Call(
        _train(c.config(_set("model.estimator", "sklearn.ensemble.GradientBoostedUnicorn"))),
        ("model.estimator", "GradientBoostedUnicorn"),
    ),
    "estimator-not-a-class": lambda c: Call(
        _train(c.config(_set("model.estimator", "sklearn.base.clone"))),
        ("model.estimator", "sklearn.base.clone"),
    ),
    "estimator-unknown-parameter": lambda c: Call(
        _train(c.config(_set("model.params.max_iters", 5))), ("model.params", "max_iters")
    ),
    "estimator-unknown-search-parameter": lambda c: Call(
        _train(c.config(_set("model.search", {"space": {"leaves": [3]}}))),
        ("model.search.space", "leaves"),
    ),
    "estimator-allow-list-setting-malformed": lambda c: Call(
        _train(c.config()),
        ("MODELCYCLE_ESTIMATOR_PACKAGES",),
        env={"MODELCYCLE_ESTIMATOR_PACKAGES": "xgboost,not a package"},
    ),
    # --- data files (found inside the training flow run) ---
    "data-file-missing": lambda c: Call(
        _train(c.config(data=c.tmp_path / "gone.parquet")),
        (str(c.tmp_path / "gone.parquet"), "not found"),
    ),
    "data-file-empty": lambda c: Call(
        _train(c.config(data=c.text("empty.csv", ""))), (str(c.tmp_path / "empty.csv"), "empty")
    ),
    "data-not-parquet": lambda c: Call(
        _train(c.config(data=c.text("junk.parquet", b"PAR1 this is not parquet"))),
        (str(c.tmp_path / "junk.parquet"), "cannot read"),
    ),
    "data-missing-column": lambda c: Call(
        _train(c.config(data=c.data(lambda t: t.drop(columns=["prestg10"])))),
        (str(c.tmp_path / "batch.csv"), "missing required column 'prestg10'"),
    ),
    "data-text-in-numeric-column": lambda c: Call(
        _train(c.config(data=c.data(_text_in_age))),
        (str(c.tmp_path / "batch.csv"), "'age'", "'abc'"),
    ),
    "data-infinite-values": lambda c: Call(
        _train(c.config(data=c.data(_infinite, "inf.parquet"))),
        (str(c.tmp_path / "inf.parquet"), "'age'", "'prestg10'", "infinite"),
    ),
    "data-repeated-column-name": lambda c: Call(
        _train(c.config(data=_duplicate_age_csv(c, "twice.csv", pd.read_parquet(c.small_parquet)))),
        (str(c.tmp_path / "twice.csv"), "'age'", "more than once"),
    ),
    "data-too-many-categories": lambda c: Call(
        _train(
            c.config(data=c.data(lambda t: t.assign(occrecode=[f"id-{i}" for i in range(len(t))])))
        ),
        (str(c.tmp_path / "batch.csv"), "'occrecode'", "features.category_limit"),
    ),
    "data-single-class-target": lambda c: Call(
        _train(c.config(data=c.data(lambda t: t.assign(high_income=0)))),
        (str(c.tmp_path / "batch.csv"), "'high_income'", "single class"),
    ),
    "data-all-missing-feature": lambda c: Call(
        _train(c.config(data=c.data(lambda t: t.assign(prestg10=np.nan)))),
        (str(c.tmp_path / "batch.csv"), "'prestg10'", "every value is missing"),
    ),
    "data-override-missing": lambda c: Call(
        _train(c.config(), "--data", str(c.tmp_path / "elsewhere.csv")),
        (str(c.tmp_path / "elsewhere.csv"), "not found"),
    ),
    # --- production windows (found inside the monitoring flow run) ---
    "window-missing": lambda c: Call(
        _monitor(c.tmp_path / "gss-2031.parquet"), ("gss-2031.parquet", "not found")
    ),
    "window-glob-matches-nothing": lambda c: Call(
        _monitor(c.tmp_path / "none-*.parquet"), ("none-*.parquet", "no file matches")
    ),
    "window-empty": lambda c: Call(
        _monitor(c.text("w-empty.csv", "")), (str(c.tmp_path / "w-empty.csv"), "empty")
    ),
    "window-missing-feature": lambda c: Call(
        _monitor(c.window(lambda t: t.drop(columns=["prestg10"]), "w.parquet")),
        (str(c.tmp_path / "w.parquet"), "missing column 'prestg10'"),
    ),
    "window-wrong-suffix": lambda c: Call(
        _monitor(c.text("w.txt", "a,b\n1,2\n")), ("w.txt", "expected .csv or .parquet")
    ),
    "window-no-rows-in-range": lambda c: Call(
        _monitor(c.window(lambda t: t, "w2.parquet"), "--start", "2050"),
        (str(c.tmp_path / "w2.parquet"), "no rows in time range"),
    ),
    "window-repeated-column-name": lambda c: Call(
        _monitor(_duplicate_age_csv(c, "w-twice.csv", c.rows)),
        (str(c.tmp_path / "w-twice.csv"), "'age'", "more than once"),
    ),
    "window-model-without-champion": lambda c: Call(
        ["monitor", str(c.window(lambda t: t, "w3.parquet")), "--model", "no-such-model"],
        ("'no-such-model'", "no champion"),
    ),
    # --- parameters and arguments ---
    "promote-version-overflow": lambda c: Call(
        ["models", "promote", MODEL, TOO_BIG, "--reason", "r"], ("version", "2147483647")
    ),
    "retire-version-zero": lambda c: Call(
        ["models", "retire", MODEL, "0", "--reason", "r"], ("version", "greater than or equal to 1")
    ),
    "incident-id-overflow": lambda c: Call(["incidents", "show", TOO_BIG], ("incident_id",)),
    "promote-unknown-version": lambda c: Call(
        ["models", "promote", MODEL, "7", "--reason", "r"], (MODEL, "7")
    ),
    "promote-blank-reason": lambda c: Call(
        ["models", "promote", MODEL, "1", "--reason", "  "], ("--reason",)
    ),
    "show-unknown-model": lambda c: Call(["models", "show", "no-such-model"], ("no-such-model",)),
    "card-unknown-version": lambda c: Call(["models", "card", MODEL, "99"], (MODEL, "99")),
    "incident-unknown": lambda c: Call(["incidents", "acknowledge", "5", "--note", "x"], ("#5",)),
    "rollback-without-previous-champion": lambda c: Call(
        ["models", "rollback", MODEL, "--reason", "try"], (MODEL,)
    ),
    "train-unknown-mode": lambda c: Call(
        _train(c.config(), "--mode", "bogus"), ("--mode", "bogus")
    ),
    "train-seed-not-a-number": lambda c: Call(_train(c.config(), "--seed", "ten"), ("--seed",)),
    "threads-setting-malformed": lambda c: Call(
        _train(c.config()),
        ("MODELCYCLE_TRAINING_THREADS",),
        env={"MODELCYCLE_TRAINING_THREADS": "two"},
    ),
    # --- model files ---
    "model-file-tampered-fine-tune": lambda c: Call(
        _train(c.config(), "--mode", "fine_tune"),
        (str(c.champion_file()), "SHA-256"),
        restore=c.tampered(c.champion_file(), lambda b: b + b"tampered"),
    ),
    "model-file-tampered-monitor": lambda c: Call(
        _monitor(c.window(lambda t: t, "w4.parquet")),
        (str(c.champion_file()), "SHA-256"),
        restore=c.tampered(c.champion_file(), lambda b: b[:-1] + bytes([b[-1] ^ 1])),
    ),
    "reference-deleted-monitor": lambda c: Call(
        _monitor(c.window(lambda t: t, "w5.parquet")),
        ("reference",),
        restore=c.tampered(c.champion_file("reference/reference.json"), lambda b: None),
    ),
    "card-tampered": lambda c: Call(
        ["models", "card", MODEL, "1"],
        ("card.json",),
        restore=c.tampered(c.champion_file("card.json"), lambda b: b.replace(b"gss", b"GSS", 1)),
    ),
    # --- registry URLs ---
    "registry-url-typo-sqlite": _no_registry_at,
    "registry-url-not-a-url": lambda c: Call(
        ["models", "list"],
        ("not a url", "SQLAlchemy URL"),
        env={"MODELCYCLE_REGISTRY_URL": "not a url"},
    ),
    "registry-url-unknown-driver": lambda c: Call(
        ["incidents", "list"],
        ("nosuchdriver",),
        env={"MODELCYCLE_REGISTRY_URL": "postgresql+nosuchdriver://u@127.0.0.1:1/db"},
    ),
    "registry-url-not-a-registry": _not_a_registry,
    "registry-home-typo": lambda c: Call(
        ["models", "audit", MODEL],
        ("registry", str(c.tmp_path / "hoem")),
        env={"MODELCYCLE_HOME": str(c.tmp_path / "hoem")},
        absent=(c.tmp_path / "hoem",),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_in_one_line_and_changes_nothing(
    case: str, state: Settings, rows: pd.DataFrame, small_parquet: Path, tmp_path: Path
) -> None:
    from modelcycle.cli import app

    call = CASES[case](Ctx(tmp_path, state, rows, small_parquet))
    try:
        before = listing(state)
        result = CliRunner().invoke(app, call.argv, env=call.env)
        after = listing(state)
    finally:
        if call.restore is not None:
            call.restore()
    output = _output(result)
    assert result.exit_code != 0, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output, output
    first, block = _error_block(output)
    assert _squeezed(call.mentions[0]) in _squeezed(first), f"{call.mentions[0]!r} not in {first!r}"
    for text in call.mentions[1:]:
        assert _squeezed(text) in _squeezed(block), f"{text!r} not in:\n{block}"
    for text in call.forbidden:
        assert text not in output
    assert after == before, "the command changed the registry or the artifact store"
    for path in call.absent:
        assert not path.exists(), f"{path} was created"


def test_the_table_has_at_least_forty_cases_across_every_kind_of_input() -> None:
    kinds = {name.split("-")[0] for name in CASES}
    assert len(CASES) >= 40
    assert {"config", "data", "window", "estimator", "model", "registry", "promote"} <= kinds


# --- class 7: user text is printed as itself, never as markup -------------------------------


def _register_with_reason(settings: Settings, reason: str) -> None:
    """A registry holding one version whose audit entry carries `reason` (no flow needed)."""
    from modelcycle.registry import Registration, VersionStatus

    registry = Registry(settings.registry_url)
    try:
        registry.register_version(
            Registration(
                model_name="churn",
                owner="risk [team]",
                description="churn classifier",
                run_id="run-1",
                artifact_uri="/artifacts/churn/run-1",
                model_file="model.skops",
                model_sha256="cd" * 32,
                data_fingerprint="data-fp",
                config_hash="config-hash",
                code_version="abc123",
                package_versions={},
                parent_version=None,
                metrics={"roc_auc": 0.8},
                gate={"passed": True},
            ),
            status=VersionStatus.CANDIDATE,
            actor="ana [ops]",
            reason=reason,
        )
    finally:
        registry.close()


def test_user_text_is_printed_as_written_never_as_markup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reason with `[/ops]` crashed `models audit` for ever (the log is append-only), a path
    with `[/y]` crashed the error printer, and the name pattern lost its `[a-z0-9]`."""
    from modelcycle.cli import app
    from modelcycle.settings import get_settings

    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path / "state"))
    reason = "[/ops] [INC-42]"  # short enough for one table cell at 80 columns
    _register_with_reason(get_settings(), reason)
    runner = CliRunner()

    audit = runner.invoke(app, ["models", "audit", "churn"])
    assert audit.exit_code == 0, _output(audit)
    assert reason in _output(audit)  # one table cell: wide enough on soft-wrapped output
    assert "ana [ops]" in _output(audit)
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "risk [team]" in _output(listed), _output(listed)

    missing = tmp_path / "x[/y]" / "c.yaml"
    first, _ = _error_block(_output(runner.invoke(app, ["config", "validate", str(missing)])))
    assert first == f"error: {missing}: config file not found"

    config = write_config(tmp_path, {**small_config_dict(Path("x.parquet")), "name": "Bad_Name"})
    first, _ = _error_block(_output(runner.invoke(app, ["config", "validate", str(config)])))
    assert "'^[a-z0-9][a-z0-9-]{0,62}$'" in first, first

    shown = runner.invoke(app, ["models", "show", "[red]no-such[/red] :boom:"])
    assert shown.exit_code == 1
    assert "'[red]no-such[/red] :boom:'" in _output(shown), _output(shown)


# --- class 9: data refused, or judged, where it enters ---------------------------------------


def test_infinite_training_values_are_refused_naming_the_column_and_the_file(
    state: Settings, tmp_path: Path, small_parquet: Path
) -> None:
    """Without min/max in the schema, ±inf passed validation and failed inside the fit with
    scikit-learn's 'Input X contains infinity', naming neither column nor file."""
    from modelcycle.cli import app

    ctx = Ctx(tmp_path, state, pd.DataFrame(), small_parquet)
    data = ctx.data(_infinite, "inf.csv")

    def unbounded(raw: dict) -> None:
        for column in ("age", "prestg10"):
            raw["columns"][column].pop("min")
            raw["columns"][column].pop("max")
            raw["columns"][column]["max_invalid_share"] = 0.5

    before = listing(state)
    result = CliRunner().invoke(app, _train(ctx.config(unbounded, data=data)))
    output = _output(result)
    assert result.exit_code == 1, output
    first, block = _error_block(output)
    assert str(data) in first
    assert "column 'age': 1 of 4000 values are infinite (inf)" in block
    assert "column 'prestg10': 1 of 4000 values are infinite (-inf)" in block
    assert listing(state) == before


def test_infinite_values_in_a_window_are_a_finding_of_the_monitoring_run(
    state: Settings, tmp_path: Path, rows: pd.DataFrame
) -> None:
    """The run crashed with no verdict and no incident; now the values are flagged and the
    rest of the window is judged."""
    from modelcycle.cli import app

    window = Ctx(tmp_path, state, rows, Path()).window(_infinite, "inf-window.csv")
    result = CliRunner().invoke(app, _monitor(window))
    output = _output(result)
    assert result.exit_code == 0, output
    assert "Traceback" not in output
    assert "column 'age': 1 of 600 values are infinite (inf)" in output
    assert "column 'prestg10': 1 of 600 values are infinite (-inf)" in output
    assert f"{MODEL} v1: warning" in output or f"{MODEL} v1: drift" in output


# --- class 10: one line and where the full log is, not a traceback wall ---------------------


def _run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """The real command in its own process: Prefect's console handler writes to that
    process's stderr exactly as a user sees it. It uses the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k != "MODELCYCLE_DEBUG"}
    env.update(
        PYTHONPATH=str(REPO),
        MODELCYCLE_HOME=str(home),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        MODELCYCLE_TRAINING_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, "-c", "from modelcycle.cli import main; main()", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _flow_run_logs(config: Path) -> list[str]:
    """Prefect's own log of the training run of `config`, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        recent = client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
        runs = [r for r in recent if r.parameters.get("config_path") == str(config)]
        assert len(runs) == 1, runs
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id]))
        )
    return [log.message for log in logs]


def test_a_failure_inside_a_flow_run_is_one_line_and_the_path_of_the_full_log(
    tmp_path: Path, small_parquet: Path
) -> None:
    """The bad data file was named correctly, but after two Prefect tracebacks (60-400 lines)."""
    ctx = Ctx(tmp_path, None, pd.DataFrame(), small_parquet)  # type: ignore[arg-type]
    data = ctx.data(_text_in_age)
    config = ctx.config(data=data)
    home = tmp_path / "state"

    quiet = _run_cli(["train", str(config)], home)
    assert quiet.returncode == 1, quiet.stderr
    assert "Traceback" not in quiet.stderr + quiet.stdout, quiet.stderr
    errors = [line for line in quiet.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, quiet.stderr
    assert errors[0].startswith(f"error: {data}: 1 schema violation(s):"), errors
    assert "column 'age'" in quiet.stderr and "'abc'" in quiet.stderr
    (pointer,) = [line for line in quiet.stderr.splitlines() if line.startswith("full log")]
    log_file = Path(pointer.split(": ", 1)[1].split(" (")[0])
    assert log_file.parent == home / "logs"
    kept = log_file.read_text()
    assert "Traceback" in kept and "DataValidationError" in kept and "validate-data" in kept
    # Prefect's own record of the run keeps the traceback too.
    assert any("Traceback" in message for message in _flow_run_logs(config))

    # --verbose (here after the command, where people type it) shows them instead; in this
    # process, which saves starting a second interpreter: the command line sends Prefect's
    # console lines to the command's stderr while the flow runs.
    from modelcycle.cli import app

    loud = CliRunner().invoke(
        app, ["train", str(config), "--verbose"], env={"MODELCYCLE_HOME": str(home)}
    )
    output = _output(loud)
    assert loud.exit_code == 1
    assert output.count("Traceback (most recent call last)") >= 3, output  # task, flow, command
    assert output.rindex(f"error: {data}") > output.rindex("Traceback"), output
    assert "full log" not in output


def test_modelcycle_debug_shows_the_traceback_like_verbose(tmp_path: Path) -> None:
    from modelcycle.cli import app

    missing = tmp_path / "nope.yaml"
    quiet = CliRunner().invoke(
        app, ["config", "validate", str(missing)], env={"MODELCYCLE_DEBUG": None}
    )
    loud = CliRunner().invoke(
        app, ["config", "validate", str(missing)], env={"MODELCYCLE_DEBUG": "1"}
    )
    assert quiet.exit_code == loud.exit_code == 1
    assert "Traceback" not in _output(quiet)
    assert "Traceback" in _output(loud) and "ConfigError" in _output(loud)
    assert _error_block(_output(loud))[0] == _error_block(_output(quiet))[0]
