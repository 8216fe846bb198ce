"""python -m pipelines.status: JSON shape, plain-text tables and the section extension point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from driftloop import status
from driftloop.evaluation import ledger
from driftloop.evaluation.ledger import LedgerEntry
from driftloop.paths import PROJECT_ROOT
from driftloop.training.registry import make_client
from pipelines import status as status_cli


def _entries(paths) -> None:
    for i in range(12):
        ledger.append(
            paths,
            LedgerEntry(
                dataset="flights",
                action="promoted" if i % 3 else "rejected",
                challenger_version=str(i + 1),
                champion_before=str(i) if i else None,
                champion_after=str(i + 1),
                metric="roc_auc",
                diff=0.01 * i,
                ci_low=0.001 * i,
                ci_high=0.02 * i,
                reasons=[f"reason {i}"],
            ),
        )


def test_cli_json_and_text_without_models(flights_paths, data_root, capsys) -> None:
    _entries(flights_paths)
    assert status_cli.main(["--dataset", "flights", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == [
        "dataset",
        "consistency",
        "registry",
        "ledger",
        "monitoring",
        "triggers",
        "policy",
        "cost",
    ]
    # The ledger names champion v12, which this (empty) store does not hold: a warning.
    consistency = printed["consistency"]
    assert not consistency["agree"] and not consistency["repairable"]
    assert "v12" in consistency["problems"][0] and "not in this store" in consistency["problems"][0]
    assert printed["monitoring"]["latest_drift"] is None
    assert printed["triggers"] == {"last_triggered": None, "recent_runs": []}
    # flights' contract writes no retraining settings and nothing was chosen yet.
    assert printed["policy"]["source"] == "defaults"
    assert "the defaults (no choice yet)" in printed["policy"]["policy"]
    assert printed["dataset"] == "flights"
    assert printed["registry"] == {"champion": None, "challenger": None}
    assert len(printed["ledger"]) == 10  # the last ten, oldest first
    assert [e["challenger_version"] for e in printed["ledger"]] == [str(i) for i in range(3, 13)]
    first = printed["ledger"][0]
    assert first["reasons"] == ["reason 2"] and first["diff"] == pytest.approx(0.02)
    assert first["timestamp"].endswith("+00:00")

    assert status_cli.main(["--dataset", "flights", "--ledger", "3"]) == 0
    text = capsys.readouterr().out
    assert "champion    (none)" in text and "challenger  (none)" in text
    assert "Ledger (last 3)" in text and "reason 11" in text and "reason 8" not in text
    assert "retraining policy in force: 2 of 3 days, cooldown 7 days" in text
    assert text.splitlines()[2] == "WARNING: the ledger and the registry disagree"


def test_extra_sections_plug_in(flights_paths, data_root, monkeypatch) -> None:
    monkeypatch.setattr(status, "SECTIONS", {})
    status.register_section(
        "monitoring",
        lambda ctx: {"dataset": ctx.dataset, "drift": "none"},
        lambda section: f"drift: {section['drift']}",
    )
    with pytest.raises(ValueError, match="taken"):
        status.register_section("ledger", lambda ctx: None)
    client = make_client(f"sqlite:///{data_root / 'mlflow.db'}")
    result = status.collect(client, flights_paths, "flights")
    assert result["monitoring"] == {"dataset": "flights", "drift": "none"}
    text = status.format_text(result)
    assert text.splitlines()[-2:] == ["Monitoring", "drift: none"]


def test_text_table_aligns_columns() -> None:
    table = status.text_table(["a", "long header"], [["xxxx", None], ["y", 1]])
    lines = table.splitlines()
    assert lines[0] == "a     long header"
    assert lines[2] == "xxxx  -"
    assert lines[3] == "y     1"


def test_module_runs_as_a_command() -> None:
    # --help keeps it cheap (no MLflow import); the JSON path is tested in process above.
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.status", "--help"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=120,
        check=True,
    )
    assert "--dataset" in out.stdout and "--json" in out.stdout


def test_long_reasons_are_wrapped_whole(flights_paths, data_root, capsys) -> None:
    sentence = " ".join(f"word{i}" for i in range(60)) + " and the end."
    ledger.append(
        flights_paths, LedgerEntry(dataset="flights", action="rejected", reasons=[sentence])
    )
    assert status_cli.main(["--dataset", "flights"]) == 0
    text = capsys.readouterr().out
    block = text[text.index("Reasons") :].split("\n\n")[0]
    lines = block.splitlines()[1:]
    assert len(lines) > 1 and all(len(line) <= 100 for line in lines)
    assert " ".join(" ".join(lines).split()[1:]) == sentence  # after the timestamp
