"""Slices at small volume: the gate says in words when no slice could be gated, and why.

Synthetic scores on a small holdout (the size of a 7-day holdout of a low-volume dataset),
through the real evaluation, gate, eval report and ledger.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from driftloop.data.contract import Contract
from driftloop.evaluation import ledger
from driftloop.evaluation.comparison import evaluate
from driftloop.evaluation.gate import GateConfig, GateDecision, decide
from driftloop.evaluation.report_html import render_report
from driftloop.paths import DatasetPaths


def _holdout(n: int, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * signal - 1)))).astype(float)
    frame = pd.DataFrame(
        {
            "flight_id": [f"f{i}" for i in range(n)],
            "carrier": rng.choice(["AA", "B6", "DL"], n),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "label": label,
        }
    )
    challenger = signal + rng.normal(0, 0.5, n)
    reference = signal + rng.normal(0, 1.5, n)
    return frame, challenger, reference


def test_small_holdout_says_slices_were_not_gated_and_what_would_be_needed(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    frame, challenger, reference = _holdout(336)
    result = evaluate(flights_contract, frame, challenger, reference, "champion v1", samples=200)
    decision = decide(result, GateConfig(), is_first=False, holdout_days=7)
    assert decision.slices_gated == 0
    largest = int(result.slices["rows"].max())
    assert "slices were not gated" in decision.slice_note
    assert f"largest slice value {largest:,}" in decision.slice_note
    days_needed = 7 * int(np.ceil(500 / largest))
    assert f"about {days_needed} days of holdout" in decision.slice_note
    assert decision.slice_note in decision.reasons
    # The decision round-trips (the eval report's JSON), the report shows it, the ledger keeps it.
    again = GateDecision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again.slice_note == decision.slice_note
    html = render_report(result, decision)
    assert "Slice gating:" in html and "slices were not gated" in html
    ledger.append(
        flights_paths,
        ledger.LedgerEntry(
            dataset="flights",
            action=decision.action,
            challenger_version="2",
            champion_before="1",
            champion_after="1",
            metric=decision.metric,
            reasons=decision.reasons,
            details={"slices_gated": decision.slices_gated, "slices": decision.slice_note},
        ),
    )
    stored = json.loads(ledger.read(flights_paths)["details"].iloc[-1])
    assert stored["slices_gated"] == 0 and "not gated" in stored["slices"]


def test_large_holdout_gates_every_slice(flights_contract: Contract) -> None:
    frame, challenger, reference = _holdout(6000)
    result = evaluate(flights_contract, frame, challenger, reference, "champion v1", samples=200)
    decision = decide(result, GateConfig(), is_first=False, holdout_days=7)
    assert decision.slices_gated == len(result.slices)
    assert decision.slice_note.startswith(f"all {len(result.slices)} slice value(s)")
    assert not any("not gated" in r for r in decision.reasons)
