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
    assert frame.empty and list(frame.columns) == ledger.columns()
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


def _entry(paths, action: str, after: tuple | None, before: tuple | None = None, **extra) -> None:
    ledger.append(
        paths,
        LedgerEntry(
            dataset="flights",
            action=action,
            challenger_version=after[0] if after else None,
            champion_before=before[0] if before else None,
            champion_after=after[0] if after else None,
            model_run_id=after[1] if after else None,
            champion_before_run_id=before[1] if before else None,
            champion_after_run_id=after[1] if after else None,
            **extra,
        ),
    )


def test_identity_is_the_run_id_and_a_new_store_starts_history_again(flights_paths) -> None:
    a, b, c = ("1", "run-a"), ("2", "run-b"), ("3", "run-c")
    _entry(flights_paths, "promoted", a, store_id="s1")
    _entry(flights_paths, "promoted", b, a, store_id="s1")
    _entry(flights_paths, "rejected", b, b, store_id="s1")
    assert ledger.decision_for(flights_paths, "run-b", "s1")["action"] == "rejected"
    assert ledger.decision_for(flights_paths, "run-b", "other-store") is None
    assert ledger.decision_for(flights_paths, "run-x", "s1") is None
    champion = ledger.ledger_champion(flights_paths)
    assert (champion.version, champion.run_id, champion.store_id) == ("2", "run-b", "s1")
    assert ledger.previous_champion_run(flights_paths) == a
    assert ledger.latest_store_id(flights_paths) == "s1"

    # The store is replaced and adopted: the old versions are gone from history; a version
    # number that comes back ("1") is a different model, told apart by its run id.
    _entry(
        flights_paths,
        "reconciled",
        None,
        b,
        store_id="s2",
        details={"adopted_store": "s2", "previous_store": "s1"},
    )
    assert ledger.latest_store_id(flights_paths) == "s2"
    champion = ledger.ledger_champion(flights_paths)
    assert (champion.version, champion.run_id) == (None, None)
    assert ledger.previous_champion_run(flights_paths) is None
    _entry(flights_paths, "promoted", ("1", "run-d"), None, store_id="s2")
    _entry(flights_paths, "promoted", c, ("1", "run-d"), store_id="s2")
    assert ledger.previous_champion_run(flights_paths) == ("1", "run-d")
    assert ledger.champion_history(flights_paths) == ("3", ["1"])
    assert ledger.decision_for(flights_paths, "run-a", "s2") is None


def test_a_process_token_tells_a_live_process_from_a_dead_one() -> None:
    import subprocess
    import sys

    from driftloop.processes import process_token, ran_since, token_alive

    assert token_alive(process_token()) is True
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    token = process_token(child.pid)
    assert token_alive(token) is True and ran_since(child.pid, since=9e12)
    assert not ran_since(child.pid, since=0)  # started after that time: not the same process
    child.kill()
    child.wait()
    assert token_alive(token) is False and not ran_since(child.pid, since=9e12)
    assert token_alive("another-host:1:1") is None
