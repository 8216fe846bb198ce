"""What is serving and what happened to it: registry aliases and the promotion ledger.

``collect`` returns one JSON-able dict::

    {"dataset": ..., "registry": {"champion": {...} | null, "challenger": {...} | null},
     "ledger": [... last entries, oldest first ...], <further sections>}

Further sections ("monitoring", "triggers", "cost") plug in with ``register_section``
(``pipelines.status.register_sections`` wires the functions of the modules that own them);
``collect`` and ``format_text`` pick them up without changes here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from driftloop.evaluation import ledger
from driftloop.evaluation.reconcile import check
from driftloop.floats import optional_float
from driftloop.paths import DatasetPaths
from driftloop.training.registry import version_for_alias

ALIASES = ("champion", "challenger")
LEDGER_LIMIT = 10


@dataclass(frozen=True)
class StatusContext:
    dataset: str
    paths: DatasetPaths
    client: Any  # mlflow.MlflowClient


@dataclass(frozen=True)
class Section:
    collect: Callable[[StatusContext], Any]
    format_text: Callable[[Any], str] | None = None


# name -> Section, in display order after "registry" and "ledger".
SECTIONS: dict[str, Section] = {}


def register_section(
    name: str,
    collect: Callable[[StatusContext], Any],
    format_text: Callable[[Any], str] | None = None,
) -> None:
    """Add a section (e.g. "monitoring", "triggers") to the status of every dataset."""
    if name in ("dataset", "consistency", "registry", "ledger"):
        raise ValueError(f"section name {name!r} is taken")
    SECTIONS[name] = Section(collect, format_text)


def version_info(client: Any, dataset: str, alias: str) -> dict[str, Any] | None:
    """One aliased model version: tags, holdout, gate outcome and its run's metrics."""
    version = version_for_alias(client, dataset, alias)
    if version is None:
        return None
    tags = dict(version.tags or {})
    metrics: dict[str, float] = {}
    if version.run_id:
        try:
            metrics = dict(client.get_run(version.run_id).data.metrics)
        except Exception:  # a deleted run must not break the status page
            metrics = {}
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
    gate = None
    if "driftloop.gate_decision" in tags:
        gate = {
            "decision": tags.get("driftloop.gate_decision"),
            "reference": tags.get("driftloop.gate_reference"),
            "diff": optional_float(tags.get("driftloop.gate_diff")),
            "ci_low": optional_float(tags.get("driftloop.gate_ci_low")),
            "ci_high": optional_float(tags.get("driftloop.gate_ci_high")),
            "report": tags.get("driftloop.gate_report"),
            # Set when the gate judged another version against this one (the baseline
            # kept as first champion over a refused model): diff = that one's - this one's.
            "challenger_version": tags.get("driftloop.gate_challenger_version"),
            "challenger_kind": tags.get("driftloop.gate_challenger_kind"),
        }
    return {
        "version": str(version.version),
        "aliases": sorted(getattr(version, "aliases", []) or [alias]),
        "run_id": version.run_id,
        "created_at": created.isoformat(),
        "model_kind": tags.get("driftloop.model_kind"),
        "primary_metric": tags.get("driftloop.primary_metric"),
        "holdout": {
            "start": tags.get("driftloop.holdout_start"),
            "end": tags.get("driftloop.holdout_end"),
        },
        "metrics": {k: metrics[k] for k in sorted(metrics)},
        "gate": gate,
        "dagster_run_id": tags.get("dagster.run_id"),
        "tags": {k: v for k, v in sorted(tags.items()) if k.startswith("driftloop.")},
    }


def ledger_records(paths: DatasetPaths, limit: int = LEDGER_LIMIT) -> list[dict[str, Any]]:
    frame = ledger.read(paths, limit=limit)
    records = []
    for row in frame.to_dict(orient="records"):
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key == "timestamp":
                out[key] = pd.Timestamp(value).isoformat()
            elif key == "reasons":
                out[key] = json.loads(value) if isinstance(value, str) else []
            elif isinstance(value, float):
                out[key] = optional_float(value)
            else:
                out[key] = None if value is None or pd.isna(value) else value
        records.append(out)
    return records


def collect(
    client: Any, paths: DatasetPaths, dataset: str, ledger_limit: int = LEDGER_LIMIT
) -> dict[str, Any]:

    status: dict[str, Any] = {
        "dataset": dataset,
        "consistency": check(paths, client, dataset).to_dict(),
        "registry": {alias: version_info(client, dataset, alias) for alias in ALIASES},
        "ledger": ledger_records(paths, ledger_limit),
    }
    context = StatusContext(dataset, paths, client)
    for name, section in SECTIONS.items():
        status[name] = section.collect(context)
    return status


# --------------------------------------------------------------------------------------
# Plain text


def text_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _interval(low: float | None, high: float | None) -> str | None:
    return None if low is None else f"[{_signed(low)}, {_signed(high)}]"


def _key_metrics(info: dict[str, Any]) -> str:
    primary = info.get("primary_metric")
    metrics = info["metrics"]
    keys = [k for k in metrics if primary and primary in k] or list(metrics)[:3]
    return ", ".join(f"{k}={metrics[k]:.4f}" for k in keys[:4]) or "-"


def _warnings(consistency: dict[str, Any] | None) -> list[str]:
    """The disagreement between ledger and registry, in full, before anything else."""
    if not consistency or consistency.get("agree", True):
        return []
    lines = ["", "WARNING: the ledger and the registry disagree"]
    lines += [f"  - {problem}" for problem in consistency.get("problems", [])]
    if consistency.get("repairable"):
        lines.append(
            "  The next retrain or the reconcile sensor repairs this "
            f"(or now: python -m pipelines.reconcile --dataset {consistency.get('dataset', '')})."
        )
    return lines


def _wrapped(label: str, text: str, width: int = 100) -> list[str]:
    """A whole reason, wrapped (never cut) under its entry."""
    import textwrap

    return textwrap.wrap(text, width, initial_indent=label, subsequent_indent=" " * len(label))


def gate_text(info: dict[str, Any]) -> str | None:
    """The gate's outcome on a version in words: promoted or refused with the challenger's
    difference to its reference, or kept over another version that the gate refused."""
    gate = info["gate"]
    if not gate:
        return None
    interval = f"{_signed(gate['diff'])} [{_signed(gate['ci_low'])}, {_signed(gate['ci_high'])}]"
    judged = gate.get("challenger_version")
    if judged and judged != info["version"]:
        kind = f" ({gate['challenger_kind']})" if gate.get("challenger_kind") else ""
        return (
            f"kept over refused v{judged}{kind}: v{judged} minus v{info['version']} "
            f"= {interval}, below zero where this version is better"
        )
    return f"{gate['decision']} {interval} (challenger minus {gate['reference'] or 'reference'})"


def _version_text(alias: str, info: dict[str, Any], registry: dict[str, Any]) -> str:
    """`vN`, with the model kind; a challenger alias left on the champion's version says so,
    so one version is never shown as two models."""
    kind = f" ({info['model_kind']})" if info.get("model_kind") else ""
    champion = registry.get("champion")
    if alias != "champion" and champion and champion["version"] == info["version"]:
        return f"v{info['version']}{kind}, the champion itself: no challenger pending"
    return f"v{info['version']}{kind}"


def format_text(status: dict[str, Any]) -> str:
    out = [f"dataset: {status['dataset']}"]
    out += _warnings(status.get("consistency"))
    out += ["", "Registry"]
    rows = []
    registry = status["registry"]
    for alias, info in registry.items():
        if info is None:
            rows.append([alias, "(none)", None, None, None, None])
            continue
        holdout = info["holdout"]
        rows.append(
            [
                alias,
                _version_text(alias, info, registry),
                info["created_at"][:19],
                f"{holdout['start']}..{holdout['end']}" if holdout["start"] else None,
                _key_metrics(info),
                gate_text(info),
            ]
        )
    out.append(
        text_table(["alias", "version", "created (UTC)", "holdout", "key metrics", "gate"], rows)
    )
    out += ["", f"Ledger (last {len(status['ledger'])})"]
    if not status["ledger"]:
        out.append("(no entries)")
    else:
        rows = [
            [
                e["timestamp"][:19],
                e["action"],
                e["challenger_version"],
                e["champion_before"],
                e["champion_after"],
                _signed(e["diff"]),
                _interval(e["ci_low"], e["ci_high"]),
                (e.get("model_run_id") or "")[:12] or None,
            ]
            for e in status["ledger"]
        ]
        out.append(
            text_table(
                ["time (UTC)", "action", "version", "before", "after", "diff", "CI", "run"],
                rows,
            )
        )
        out += ["", "Reasons (first reason of each entry, newest last)"]
        for e in status["ledger"]:
            if e["reasons"]:
                out += _wrapped(f"{e['timestamp'][:19]}  ", e["reasons"][0])
    for name, section in SECTIONS.items():
        body = section.format_text(status[name]) if section.format_text else None
        out += ["", name.capitalize(), body or json.dumps(status[name], indent=2, default=str)]
    return "\n".join(out)
