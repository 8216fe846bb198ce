"""The promotion ledger: append-only files, read in time order, champion history replayed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from driftloop.evaluation import ledger
from driftloop.evaluation.ledger import LedgerEntry


def _promote(paths, version: str, before: str | None) -> None:
    ledger.append(
        paths,
        LedgerEntry(
            dataset="flights",
            action="promoted",
            challenger_version=version,
            champion_before=before,
            champion_after=version,
            metric="roc_auc",
            challenger_value=0.7,
            champion_value=0.69,
            diff=0.01,
            ci_low=0.004,
            ci_high=0.016,
            reasons=[f"v{version} is better"],
            dagster_run_id="run-1",
            report_path=f"/reports/v{version}.html",
        ),
    )


def _rollback(paths, before: str, after: str) -> None:
    ledger.append(
        paths,
        LedgerEntry(
            dataset="flights",
            action="rollback",
            champion_before=before,
            champion_after=after,
            reasons=["bad"],
        ),
    )


def _snapshot(paths) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in paths.ledger.iterdir()}


def test_empty_ledger(flights_paths) -> None:
    frame = ledger.read(flights_paths)
    assert frame.empty and list(frame.columns) == ledger.COLUMNS
    assert ledger.previous_champion(flights_paths) is None


def test_append_only_and_read_in_order(flights_paths) -> None:
    _promote(flights_paths, "1", None)
    first = _snapshot(flights_paths)
    ledger.append(
        flights_paths,
        LedgerEntry(
            dataset="flights",
            action="rejected",
            challenger_version="2",
            champion_before="1",
            champion_after="1",
            reasons=["worse than champion v1: ROC AUC ..."],
        ),
    )
    second = _snapshot(flights_paths)
    _promote(flights_paths, "3", "1")
    third = _snapshot(flights_paths)
    # Only files are added; every earlier file is byte-for-byte where it was.
    for before, after in ((first, second), (second, third)):
        assert len(after) == len(before) + 1
        assert all(after[name] == meta for name, meta in before.items())
    assert all(name.endswith(".parquet") for name in third)

    frame = ledger.read(flights_paths)
    assert list(frame["action"]) == ["promoted", "rejected", "promoted"]
    assert list(frame["challenger_version"]) == ["1", "2", "3"]
    assert frame["timestamp"].is_monotonic_increasing
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert json.loads(frame["reasons"][1]) == ["worse than champion v1: ROC AUC ..."]
    assert pd.isna(frame["champion_before"][0])
    assert frame["ci_low"][0] == pytest.approx(0.004)
    assert list(ledger.read(flights_paths, limit=2)["challenger_version"]) == ["2", "3"]


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="ledger action"):
        LedgerEntry(dataset="flights", action="demoted")


def test_previous_champion_across_promotions_and_rollbacks(flights_paths) -> None:
    p = flights_paths
    _promote(p, "1", None)
    assert ledger.previous_champion(p) is None
    _promote(p, "2", "1")
    assert ledger.previous_champion(p) == "1"
    _promote(p, "3", "2")
    assert ledger.champion_history(p) == ("3", ["1", "2"])
    assert ledger.previous_champion(p) == "2"
    _rollback(p, "3", "2")
    # Rolling back again goes further back, not to the version just rolled back from.
    assert ledger.champion_history(p) == ("2", ["1"])
    assert ledger.previous_champion(p) == "1"
    _rollback(p, "2", "1")
    assert ledger.previous_champion(p) is None
    _promote(p, "4", "1")
    assert ledger.previous_champion(p) == "1"
    # A rollback to an explicit version that was never champion leaves the history alone.
    _rollback(p, "4", "2")
    assert ledger.champion_history(p) == ("2", ["1"])
    assert ledger.previous_champion(p) == "1"
