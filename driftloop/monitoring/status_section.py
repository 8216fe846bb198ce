"""What the trigger reads from the lake and what a person reads in ``pipelines.status``: the
daily signals (drift summaries, pooled performance rows), the trigger's latest decision
(written by the sensor under ``<data root>/reports/<dataset>/trigger/latest.json``) and
the monitoring section of the status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from datetime import date

from driftloop.data.lake import existing_partitions, write_text_atomic
from driftloop.floats import json_float
from driftloop.monitoring.drift_outcome import read_drift_summary
from driftloop.monitoring.signals import MODEL_VERSION
from driftloop.monitoring.trigger import WindowSignal
from driftloop.names import DRIFT_TABLE, PERFORMANCE_TABLE, PREDICTIONS_TABLE
from driftloop.paths import DatasetPaths

# ------------------------------------------------------------------------- signals


def _performance_row(paths: DatasetPaths, day: str) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    path = paths.partition_file(PERFORMANCE_TABLE, day)
    if not path.exists():
        return None
    records = pq.read_table(path).to_pandas().to_dict(orient="records")
    return records[0] if records else None


def _latest_performance(paths: DatasetPaths, day: str) -> dict[str, Any] | None:
    """The performance row of the latest labelled day on or before ``day``: the pooled
    realised verdict production holds on ``day`` (labels arrive after the day itself)."""
    labelled = [d for d in existing_partitions(paths.table(PERFORMANCE_TABLE)) if d <= day]
    return _performance_row(paths, labelled[-1]) if labelled else None


def describe_day(day: str, summary: dict[str, Any] | None, performance: dict | None) -> str:
    """One day's inputs in words (the trigger quotes the latest breached day's)."""
    parts = []
    if summary and "drift_score" in summary:
        ranked = [r["column"] for r in summary.get("ranked_features", [])[:3]]
        most = f"; most: {', '.join(ranked)})" if ranked else ")"
        parts.append(
            f"drift score {summary['drift_score']:.2f} (breaches at "
            f"{summary['drift_threshold']:.2f}{most}"
        )
        estimated = summary.get("estimated") or {}
        if json_float(estimated.get("value")) is not None:
            parts.append(
                f"estimated {estimated['metric']} {estimated['value']:.4f} over "
                f"{estimated['days']} days (floor {json_float(estimated.get('floor')) or 0:.4f})"
            )
    if performance and json_float(performance.get("pooled_value")) is not None:
        metric = performance.get("primary_metric", "metric")
        floor = json_float(performance.get("pooled_floor"))
        parts.append(
            f"realised {metric} {performance['pooled_value']:.4f} over "
            f"{performance.get('pooled_days', '?')} labelled days to {performance['day']}"
            + ("" if floor is None else f" (floor {floor:.4f})")
        )
    return f"{day}: " + ", ".join(parts) if parts else ""


def read_signals(paths: DatasetPaths, days: list[str]) -> list[WindowSignal]:
    """One ``WindowSignal`` per day: drift and estimated performance from the drift summary
    (the calibrated verdicts; not breached when the day has none), realised performance
    from the latest pooled verdict on or before the day (None until labels came)."""
    signals = []
    for day in days:
        summary = read_drift_summary(paths, day) or {}
        performance = _latest_performance(paths, day)
        pooled = None
        if performance is not None and json_float(performance.get("pooled_value")) is not None:
            pooled = bool(performance["breached"])
            judged, serving = performance.get("champion_version"), summary.get("champion_version")
            if judged is not None and serving is not None and str(judged) != str(serving):
                pooled = None  # a verdict on an earlier champion says nothing of this one
        signals.append(
            WindowSignal(
                day=date.fromisoformat(day),
                drift_breached=bool(summary.get("drift_breached", summary.get("breached"))),
                performance_breached=pooled,
                estimated_breached=summary.get("estimated_breached"),
                detail=describe_day(day, summary, performance),
            )
        )
    return signals


def decision_path(paths: DatasetPaths) -> Path:
    return paths.reports / "trigger" / "latest.json"


def write_decision(paths: DatasetPaths, record: dict[str, Any]) -> bool:
    """Keep the trigger's latest decision for ``pipelines.status``; False when unchanged."""
    path = decision_path(paths)
    text = json.dumps(record, indent=2, default=str) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    write_text_atomic(text, path)
    return True


def read_decision(paths: DatasetPaths) -> dict[str, Any] | None:
    path = decision_path(paths)
    return json.loads(path.read_text()) if path.exists() else None


def latest_monitoring(paths: DatasetPaths, n: int = 7) -> dict[str, Any]:
    """For the status CLI: the trigger's latest decision, the latest drift verdict, the last
    n drift days (calibrated score, estimated performance) and the last n days of realised
    performance (the day's metric and the pooled verdict), and the latest scored day."""
    import pyarrow.parquet as pq

    drift_days = [d for d in existing_partitions(paths.table(DRIFT_TABLE))][-n:]
    summaries = [s for d in drift_days if (s := read_drift_summary(paths, d)) is not None]
    performance = []
    for day in existing_partitions(paths.table(PERFORMANCE_TABLE))[-n:]:
        row = _performance_row(paths, day)
        if row is None:
            continue
        performance.append(
            {
                "day": day,
                "model_version": str(row.get("model_version")),
                "metric": row.get("primary_metric"),
                "value": json_float(row.get("value")),
                "reference": json_float(row.get("reference")),
                "floor": json_float(row.get("floor")),
                "labelled_rows": int(row.get("labelled_rows", 0)),
                "pooled_value": json_float(row.get("pooled_value")),
                "pooled_floor": json_float(row.get("pooled_floor")),
                "pooled_days": row.get("pooled_days"),
                "breached": bool(row.get("breached")),
            }
        )
    scored = existing_partitions(paths.table(PREDICTIONS_TABLE))
    latest_scored = None
    if scored:
        path = paths.partition_file(PREDICTIONS_TABLE, scored[-1])
        versions = pq.read_table(path, columns=[MODEL_VERSION]).column(0).unique().to_pylist()
        latest_scored = {"day": scored[-1], "model_versions": [str(v) for v in versions]}
    keys = ("day", "champion_version", "share_drifted", "dataset_drifted", "prediction_drifted")
    keys += ("breached", "drift_score", "drift_threshold", "ranked_features", "report_path")
    day_keys = ("day", "drift_score", "breached", "estimated_breached", "share_drifted")
    return {
        "trigger": read_decision(paths),
        "latest_drift": {k: summaries[-1].get(k) for k in keys} if summaries else None,
        "drift": [
            {k: s.get(k) for k in day_keys}
            | {"estimated": json_float((s.get("estimated") or {}).get("value"))}
            for s in summaries
        ],
        "performance": performance,
        "latest_predictions": latest_scored,
    }


def format_monitoring_text(data: dict[str, Any]) -> str:
    """Plain-text block of ``latest_monitoring`` for ``pipelines.status``."""
    lines = []
    trigger = data.get("trigger")
    lines.append(
        f"trigger (tick on {trigger['today']}): {trigger['reason']}"
        if trigger
        else "trigger: (no decision yet)"
    )
    scored = data.get("latest_predictions")
    lines.append(
        f"latest scored day: {scored['day']} by v{', v'.join(scored['model_versions'])}"
        if scored
        else "latest scored day: (none)"
    )
    drift = data.get("latest_drift")
    if drift:
        score = drift.get("drift_score")
        ranked = [r["column"] for r in drift.get("ranked_features") or []][:5]
        lines.append(
            f"drift {drift['day']} (champion v{drift['champion_version']}): "
            f"{'BREACHED' if drift['breached'] else 'ok'}, calibrated score "
            + ("-" if score is None else f"{score:.2f} (breaches at {drift['drift_threshold']})")
            + f", by importance: {', '.join(ranked) or '-'}; per-column tests: share drifted "
            f"{drift['share_drifted']:.2f}, prediction drifted {drift['prediction_drifted']}"
        )
    else:
        lines.append("drift: (no report yet)")
    if data.get("performance"):
        for row in data["performance"]:
            value = "-" if row["value"] is None else f"{row['value']:.4f}"
            pooled = "-" if row["pooled_value"] is None else f"{row['pooled_value']:.4f}"
            floor = "-" if row["pooled_floor"] is None else f"{row['pooled_floor']:.4f}"
            lines.append(
                f"performance {row['day']} v{row['model_version']}: {row['metric']}={value} "
                f"({row['labelled_rows']} labels); pooled over {row['pooled_days']} days "
                f"{pooled} (floor {floor})" + (" BREACHED" if row["breached"] else "")
            )
    else:
        lines.append("performance: (no labelled day yet)")
    return "\n".join(lines)
