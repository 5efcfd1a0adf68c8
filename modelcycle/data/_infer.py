"""A first pipeline config inferred from a data file, for `modelcycle init`.

Everything here is a guess a person confirms: the written file says where each value came from,
and what could be sensitive or personal is suggested in comments, never switched on. A column
that looks like an identifier or personal data is left out of the features, so a config
written without reading it never trains on an e-mail address.
"""

from __future__ import annotations

import getpass
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from modelcycle.config import TaskType
from modelcycle.data._prepare import _as_text, read_file, time_values
from modelcycle.errors import DataError

MAX_CATEGORIES = 50  # more distinct values than this: no `allowed` list
MAX_CLASSES = 50  # more distinct target values than this is not a classification
MAX_INTEGER_CLASSES = 10  # whole-number targets with at most this many values are classes
RANGE_MARGIN = 0.1  # of the observed span, on each side
MISSING_MARGIN = 0.02  # added to 1.5 x the observed missing share
PATTERN_SHARE = 0.9  # of sampled values that must match a personal-data pattern
SAMPLE = 1000  # values per column looked at for patterns

_PII_NAMES = re.compile(
    r"(^|_)(e_?mail|phone|mobile|tel|telephone|fax|ssn|social_security|passport|"
    r"first_?name|last_?name|full_?name|surname|given_?name|name|address|street|postcode|"
    r"zip_?code|ip_?address|iban|credit_?card|card_?number|birth_?date|date_of_birth|dob|"
    r"national_?id|tax_?id|licen[cs]e_?number)($|_)"
)
_ID_NAMES = re.compile(r"(^|_)(id|uuid|guid|key|identifier|record|row_?number)$")
_SENSITIVE_NAMES = re.compile(
    r"(^|_)(gender|sex|race|ethnicity|ethnic|ethnic_?group|religion|religious|nationality|"
    r"citizenship|disability|disabled|sexual_?orientation|pregnan\w*)($|_)"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")
_PERSON = re.compile(r"^[A-Z][a-z'\u2019-]+(?: [A-Z][a-z'\u2019-]+)+$")


@dataclass(frozen=True)
class ColumnGuess:
    """What one column became, and why; `reason` is written next to it as a comment."""

    name: str
    role: str  # numeric, categorical, target, time, excluded
    schema: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    pii: str | None = None  # why it looks personal
    sensitive: str | None = None  # why it looks like a protected attribute


@dataclass(frozen=True)
class InferredConfig:
    """A config as a mapping (what is validated) and the columns behind it (what is said)."""

    raw: dict[str, Any]
    columns: list[ColumnGuess]
    rows: int
    source: str

    @property
    def pii_suggestions(self) -> list[ColumnGuess]:
        return [c for c in self.columns if c.pii]

    @property
    def sensitive_suggestions(self) -> list[ColumnGuess]:
        return [c for c in self.columns if c.sensitive]


def infer_config(
    path: Path,
    target: str,
    *,
    source: str,
    name: str | None = None,
    task: TaskType | None = None,
    time_column: str | None = None,
) -> InferredConfig:
    """Read `path` and guess a pipeline config; `source` is how the config names the file."""
    table = read_file(path)
    if table.empty:
        raise DataError(f"{path}: no rows to infer a schema from")
    for option, column in (("--target", target), ("--time-column", time_column)):
        if column is not None and column not in table.columns:
            raise DataError(
                f"{option}: column {column!r} is not in {path} (columns: {list(table.columns)})"
            )
    task = task or guess_task(table[target], target)
    guesses = [_target_guess(table[target], target, task)]
    if time_column is not None:
        guesses.append(_time_guess(table[time_column], time_column))
    for column in table.columns:
        if column not in (target, time_column):
            guesses.append(guess_column(table[column], str(column), len(table)))
    features = [g for g in guesses if g.role in ("numeric", "categorical")]
    if not features:
        raise DataError(f"{path}: no column could be a feature (see the reasons with --output -)")
    raw = _config_mapping(
        name or config_name(path), path, source, target, task, time_column, guesses, table
    )
    return InferredConfig(raw=raw, columns=guesses, rows=len(table), source=source)


def config_name(path: Path) -> str:
    """A model name from the file name, as the schema wants it (lowercase, digits, `-`)."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")
    return (slug or "model")[:63]


def guess_task(values: pd.Series, target: str) -> TaskType:
    """Two values: binary; text or a few whole numbers: multiclass; other numbers: regression."""
    present = values.dropna()
    distinct = present.nunique()
    if distinct < 2:
        raise DataError(f"--target {target!r}: {distinct} distinct value(s); nothing to predict")
    if distinct == 2:
        return TaskType.binary_classification
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    whole = numeric and bool((present % 1 == 0).all())
    if numeric and not (whole and distinct <= MAX_INTEGER_CLASSES):
        return TaskType.regression
    if distinct > MAX_CLASSES:
        raise DataError(
            f"--target {target!r}: {distinct} distinct text values, too many classes; "
            "pass --task regression if it is a quantity"
        )
    return TaskType.multiclass_classification


def guess_column(values: pd.Series, name: str, rows: int) -> ColumnGuess:
    """Feature, or left out with the reason; personal and sensitive columns are never features."""
    present = values.dropna()
    missing_share = 1.0 - len(present) / rows
    pii = _pii_reason(values, name)
    sensitive = _sensitive_reason(name)
    if present.empty:
        return ColumnGuess(name, "excluded", reason="every value is missing")
    if pii:
        return ColumnGuess(name, "excluded", reason=f"looks personal: {pii}", pii=pii)
    if sensitive:
        return ColumnGuess(
            name, "excluded", reason=f"looks sensitive: {sensitive}", sensitive=sensitive
        )
    if present.nunique() == 1:
        return ColumnGuess(name, "excluded", reason="a single value: carries no information")
    if pd.api.types.is_datetime64_any_dtype(values) or _looks_like_time(present):
        return ColumnGuess(
            name, "excluded", reason="timestamps: give it as --time-column, or derive features"
        )
    if pd.api.types.is_bool_dtype(present):
        return _categorical(name, values, missing_share)
    if pd.api.types.is_numeric_dtype(present):
        return _numeric(name, present, missing_share)
    distinct = present.astype("string").nunique()
    if distinct > MAX_CATEGORIES and distinct > 0.5 * len(present):
        return ColumnGuess(
            name,
            "excluded",
            reason=f"free text or an identifier ({distinct} distinct values in {len(present)})",
        )
    return _categorical(name, values, missing_share)


def _pii_reason(values: pd.Series, name: str) -> str | None:
    lowered = name.lower()
    if _PII_NAMES.search(lowered):
        return "its name"
    if _ID_NAMES.search(lowered):
        return "its name (an identifier)"
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_integer_dtype(present) and present.is_unique and len(present) > 20:
        steps = present.sort_values().diff().dropna()
        if (steps == 1).all():
            return "its values (consecutive unique integers: a row number or identifier)"
    if pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
        return None
    if pd.api.types.is_datetime64_any_dtype(present) or _looks_like_time(present):
        return None  # dates are digits and dashes, like phone numbers
    sample = present.astype("string").str.strip().head(SAMPLE)
    for pattern, what in ((_EMAIL, "e-mail addresses"), (_PHONE, "phone numbers")):
        if sample.str.match(pattern).mean() >= PATTERN_SHARE and _has_digits(sample, what):
            return f"its values (they look like {what})"
    if sample.str.match(_PERSON).mean() >= PATTERN_SHARE and sample.nunique() > 0.5 * len(sample):
        return "its values (they look like people's names)"
    if len(present) > 20 and present.astype("string").is_unique:
        return "its values (every value is different: an identifier)"
    return None


def _has_digits(sample: pd.Series, what: str) -> bool:
    """Phone numbers need at least 7 digits, so short codes and dates are not taken for them."""
    if what != "phone numbers":
        return True
    return bool((sample.str.count(r"\d") >= 7).mean() >= PATTERN_SHARE)


def _sensitive_reason(name: str) -> str | None:
    return "its name" if _SENSITIVE_NAMES.search(name.lower()) else None


def _looks_like_time(present: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
        return False
    sample = present.astype("string").head(SAMPLE)
    if not sample.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return False
    parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
    return bool(parsed.notna().all())


def _missing_allowance(share: float) -> float:
    return min(1.0, math.ceil((share * 1.5 + MISSING_MARGIN) * 100) / 100)


def _numeric(name: str, present: pd.Series, missing_share: float) -> ColumnGuess:
    whole = bool((present % 1 == 0).all())
    low, high = float(present.min()), float(present.max())
    lo, hi = _with_margin(low, high, whole)
    schema = {
        "type": "integer" if whole else "numeric",
        "min": lo,
        "max": hi,
        "max_missing_share": _missing_allowance(missing_share),
        "max_invalid_share": 0.01,
    }
    reason = f"{'whole ' if whole else ''}numbers from {low:g} to {high:g}"
    return ColumnGuess(name, "numeric", schema, reason)


def _with_margin(low: float, high: float, whole: bool) -> tuple[float | int, float | int]:
    """The observed range widened by RANGE_MARGIN of its span, never below 0 for counts."""
    span = (high - low) or abs(high) or 1.0
    lo, hi = low - RANGE_MARGIN * span, high + RANGE_MARGIN * span
    if low >= 0:
        lo = max(lo, 0.0)
    scale = 10.0 ** (math.floor(math.log10(span)) - 2)
    lo, hi = math.floor(lo / scale) * scale, math.ceil(hi / scale) * scale
    if whole:
        return math.floor(lo), math.ceil(hi)
    return float(f"{lo:.6g}"), float(f"{hi:.6g}")


def _categorical(name: str, values: pd.Series, missing_share: float) -> ColumnGuess:
    text = _as_text(values).dropna()
    categories = sorted(text.unique().tolist())
    schema: dict[str, Any] = {
        "type": "categorical",
        "max_missing_share": _missing_allowance(missing_share),
        "max_invalid_share": 0.01,
    }
    if len(categories) <= MAX_CATEGORIES:
        schema["allowed"] = categories
        reason = f"{len(categories)} categories"
    else:
        reason = f"{len(categories)} categories (more than {MAX_CATEGORIES}: no allowed list)"
    return ColumnGuess(name, "categorical", schema, reason)


def _target_guess(values: pd.Series, name: str, task: TaskType) -> ColumnGuess:
    missing_share = float(values.isna().mean())
    if task is TaskType.regression:
        if not pd.api.types.is_numeric_dtype(values.dropna()):
            raise DataError(f"--target {name!r}: regression needs numbers, the column holds text")
        schema = {"type": "numeric", "max_missing_share": _missing_allowance(missing_share)}
        return ColumnGuess(name, "target", schema, "the quantity to predict")
    guess = _categorical(name, values, missing_share)
    schema = {k: v for k, v in guess.schema.items() if k != "max_invalid_share"}
    return ColumnGuess(name, "target", schema, f"the class to predict: {guess.reason}")


def _time_guess(values: pd.Series, name: str) -> ColumnGuess:
    try:
        parsed = time_values(values, name)
    except DataError as exc:
        raise DataError(f"--time-column: {exc}") from None
    if pd.api.types.is_datetime64_any_dtype(parsed):
        zone = parsed.dt.tz
        where = f"in {zone}" if zone is not None else "without a time zone (compared as written)"
        return ColumnGuess(name, "time", {"type": "datetime"}, f"timestamps {where}")
    if not pd.api.types.is_numeric_dtype(parsed):
        raise DataError(f"--time-column {name!r}: holds neither numbers nor timestamps")
    whole = bool((parsed.dropna() % 1 == 0).all())
    # No min/max: later periods must not be refused for lying beyond the file's last one.
    return ColumnGuess(name, "time", {"type": "integer" if whole else "numeric"}, "periods")


# --- the mapping --------------------------------------------------------------------------

_METRICS = {
    TaskType.binary_classification: ("roc_auc", ["accuracy", "average_precision", "log_loss"]),
    TaskType.multiclass_classification: ("balanced_accuracy", ["accuracy", "f1_macro"]),
    TaskType.regression: ("r2", ["rmse", "mae"]),
}
_ESTIMATORS = {
    True: "sklearn.ensemble.HistGradientBoostingClassifier",
    False: "sklearn.ensemble.HistGradientBoostingRegressor",
}


def _config_mapping(
    name: str,
    path: Path,
    source: str,
    target: str,
    task: TaskType,
    time_column: str | None,
    guesses: list[ColumnGuess],
    table: pd.DataFrame,
) -> dict[str, Any]:
    primary, extra = _METRICS[task]
    numeric = [g.name for g in guesses if g.role == "numeric"]
    categorical = [g.name for g in guesses if g.role == "categorical"]
    evaluation: dict[str, Any] = {"primary_metric": primary, "extra_metrics": extra}
    if task is TaskType.binary_classification:
        evaluation["positive_class"] = _positive_class(table[target])
    split = "time" if time_column else ("stratified" if task.is_classification else "random")
    raw: dict[str, Any] = {
        "name": name,
        "owner": getpass.getuser(),
        "description": f"Predicts {target} from {len(numeric) + len(categorical)} columns of "
        f"{path.name}.",
        "intended_use": "To be stated by the owner: which decisions it may support, and which not.",
        "limitations": [f"Inferred from {path.name} ({len(table)} rows); review before use."],
        "task": task.value,
        "data": {"source": source},
        "target": target,
        "features": {"numeric": numeric, "categorical": categorical},
    }
    if time_column:
        raw["time_column"] = time_column
    raw["columns"] = {g.name: g.schema for g in guesses if g.role != "excluded"}
    raw["split"] = {"strategy": split}
    raw["model"] = {"estimator": _ESTIMATORS[task.is_classification], "params": {}}
    raw["evaluation"] = evaluation
    raw["gate"] = {"non_inferiority": {"max_drop": 0.01}}
    raw["monitoring"] = {"drift_share": 0.5, "warning_share": 0.2, "retrain_mode": "scratch"}
    return raw


def _positive_class(values: pd.Series) -> Any:
    """1 (or True) for 0/1 targets; otherwise the rarer class, usually the event a binary model
    is for (ties go to the larger value)."""
    counts = values.dropna().value_counts()
    if set(counts.index.tolist()) == {0, 1}:  # also {False, True} and {0.0, 1.0}
        value = max(counts.index.tolist())
    else:
        rarest = counts[counts == counts.min()].index
        value = max(rarest.tolist())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


# --- the commented YAML -------------------------------------------------------------------


def _comment(text: str) -> str:
    """One comment line; control characters (a newline in a column name) cannot end it."""
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", text)


def _flow(value: Any) -> str:
    """A value in YAML flow style on one line (quoted wherever YAML needs it)."""
    dumped = yaml.safe_dump(
        {"v": value}, default_flow_style=True, sort_keys=False, width=10**9, allow_unicode=True
    ).strip()
    return dumped[len("{v: ") : -1]


def _key(key: str) -> str:
    return _flow(key)


def render_config(inferred: InferredConfig) -> str:
    """The config as commented YAML: every guess says where it came from."""
    raw = inferred.raw
    lines = [
        f"# Written by `modelcycle init` from {_comment(inferred.source)} ({inferred.rows} rows).",
        "# Every value below is a guess from that file: read it, then `modelcycle config "
        "validate` it.",
        "# Keys left out take the schema's defaults (`modelcycle config schema`).",
        f"name: {_flow(raw['name'])}",
        f"owner: {_flow(raw['owner'])}  # who answers for this model",
        f"description: {_flow(raw['description'])}",
        f"intended_use: {_flow(raw['intended_use'])}",
        f"limitations: {_flow(raw['limitations'])}",
        f"task: {raw['task']}  # from the target's values; --task to choose",
        "data:",
        f"  source: {_flow(raw['data']['source'])}  # relative to this file",
        f"target: {_flow(raw['target'])}",
    ]
    if "time_column" in raw:
        lines += [
            f"time_column: {_flow(raw['time_column'])}",
            "# Train on one period only (both ends included; a date as end includes its day):",
            "# data: {source: ..., time_range: {start: 2017-01-01, end: 2017-12-31}}",
        ]
    lines += ["features:"]
    lines += [f"  numeric: {_flow(raw['features']['numeric'])}"]
    lines += [f"  categorical: {_flow(raw['features']['categorical'])}"]
    lines += _suggestions(inferred)
    lines += [
        "# The expected schema, from the file: ranges widened by 10 % of their span (widen them",
        "# if later periods may go further), the categories seen, and missing shares a little",
        "# above the file's. Validation refuses a batch that breaks them; monitoring reports it.",
        "columns:",
    ]
    for guess in inferred.columns:
        if guess.role != "excluded":
            lines.append(f"  {_key(guess.name)}: {_flow(guess.schema)}  # {_comment(guess.reason)}")
    excluded = [g for g in inferred.columns if g.role == "excluded" and not (g.pii or g.sensitive)]
    if excluded:
        lines.append("# Left out:")
        lines += [f"#   {_comment(g.name)}: {_comment(g.reason)}" for g in excluded]
    lines += _model_lines(raw)
    return "\n".join(lines) + "\n"


def _suggestions(inferred: InferredConfig) -> list[str]:
    lines: list[str] = []
    sensitive = inferred.sensitive_suggestions
    if sensitive:
        lines += [
            "# Possibly sensitive (from their names; not used as features). Uncomment to evaluate",
            "# slices and fairness by them in the gate:",
            f"# sensitive_columns: {_comment(_flow([g.name for g in sensitive]))}",
        ]
    pii = inferred.pii_suggestions
    if pii:
        lines.append("# Possibly personal data, left out of the features:")
        lines += [f"#   {_comment(g.name)}: {_comment(g.pii or '')}" for g in pii]
        lines += [
            "# Columns not listed anywhere are dropped when the file is read; naming them in",
            "# pii_columns also refuses any later use of them as a feature:",
            f"# pii_columns: {_comment(_flow([g.name for g in pii]))}",
        ]
    return lines


def _model_lines(raw: dict[str, Any]) -> list[str]:
    evaluation = raw["evaluation"]
    lines = [
        f"split: {_flow(raw['split'])}"
        + (
            "  # the latest periods are held out whole"
            if raw["split"]["strategy"] == "time"
            else ""
        ),
        "model:",
        f"  estimator: {raw['model']['estimator']}",
        "  params: {}  # random_state defaults to split.seed",
        "  # search: {space: {learning_rate: [0.05, 0.1], max_leaf_nodes: [15, 31]}}",
        "evaluation:",
        f"  primary_metric: {evaluation['primary_metric']}",
        f"  extra_metrics: {_flow(evaluation['extra_metrics'])}",
    ]
    if "positive_class" in evaluation:
        lines.append(f"  positive_class: {_flow(evaluation['positive_class'])}  # the rarer class")
    lines += [
        "gate:",
        "  # Beat or match the champion: a candidate may lose at most max_drop of the primary",
        "  # metric (paired bootstrap on the same holdout rows). Robustness and fairness run",
        "  # with the schema's defaults; budgets are reported, not judged.",
        f"  non_inferiority: {_flow(raw['gate']['non_inferiority'])}",
        f"  # floors: {{{evaluation['primary_metric']}: ...}}  # an absolute floor, when known",
        "monitoring:",
        "  # Status `drift` when half the features drift, `warning` from a fifth; drift asks",
        "  # for a retrain from scratch.",
        f"  drift_share: {raw['monitoring']['drift_share']}",
        f"  warning_share: {raw['monitoring']['warning_share']}",
        f"  retrain_mode: {raw['monitoring']['retrain_mode']}",
    ]
    return lines
