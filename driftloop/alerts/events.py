"""What the alerts say: messages built from the ledger, the lake's markers and monitoring.

Each builder returns `Alert`s whose keys name the event itself (a ledger file, a marker's
write time, a run id, a calendar day), so the outbox can tell a repeat from a new event.
Links point at the Dagster UI (``base_url``, e.g. http://127.0.0.1:3000).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from driftloop.alerts.notify import Alert
from driftloop.data.lake import BLOCKED_MARKER, existing_partitions
from driftloop.evaluation import ledger
from driftloop.floats import optional_float
from driftloop.monitoring.drift_outcome import read_drift_summary
from driftloop.paths import DatasetPaths

RAW_TABLE = "raw"
DRIFT_TABLE = "drift"
PERFORMANCE_TABLE = "performance"
MAX_REASONS = 3
ERROR_LINES = 5  # of a failed step's error


def run_url(base_url: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/runs/{run_id}"


def asset_url(base_url: str, dataset: str, asset: str, partition: str | None = None) -> str:
    url = f"{base_url.rstrip('/')}/assets/{quote(dataset)}/{quote(asset)}"
    return url + (f"?view=partitions&partition={quote(partition)}" if partition else "")


def _v(value: Any) -> str:
    return "(none)" if value is None or value == "" else f"v{value}"


def _gate_numbers(row: dict[str, Any]) -> str | None:
    metric = row.get("metric")
    challenger = optional_float(row.get("challenger_value"))
    champion = optional_float(row.get("champion_value"))
    diff, low, high = (optional_float(row.get(k)) for k in ("diff", "ci_low", "ci_high"))
    if not metric or challenger is None:
        return None
    text = f"{metric}: challenger {challenger:.4f}"
    if champion is not None:
        text += f" vs reference {champion:.4f}"
    if diff is not None:
        text += f", improvement {diff:+.4f}"
    if low is not None and high is not None:
        text += f" (interval {low:+.4f} to {high:+.4f})"
    return text


def ledger_alert(paths: DatasetPaths, file: Path, base_url: str) -> Alert | None:
    """The alert for one ledger entry file (None for an action nobody needs to hear of)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(file).to_pylist()
    if not rows:
        return None
    row = rows[0]
    dataset, action = paths.dataset, row["action"]
    challenger, before = row["challenger_version"], row["champion_before"]
    after = row["champion_after"]
    details = json.loads(row.get("details") or "{}")
    titles = {
        "promoted": f"{dataset}: {_v(challenger)} promoted to champion (was {_v(before)})",
        "rejected": f"{dataset}: {_v(challenger)} refused by the gate; champion stays {_v(before)}",
        "rollback": f"{dataset}: champion rolled back from {_v(before)} to {_v(after)}",
        "canary_started": f"{dataset}: canary started for {_v(challenger)}",
        "canary_changed": f"{dataset}: canary of {_v(challenger)} changed",
        "canary_stopped": f"{dataset}: canary of {_v(challenger)} "
        + ("ended" if details.get("ended_by") else "stopped"),
        "reconciled": f"{dataset}: registry reconciled with the ledger",
    }
    if action not in titles:
        return None
    lines = []
    if row.get("trigger_reason"):
        lines.append(f"retrained because: {row['trigger_reason']}")
    if numbers := _gate_numbers(row):
        lines.append(numbers)
    reasons = json.loads(row.get("reasons") or "[]")
    lines += [f"- {r}" for r in reasons[:MAX_REASONS]]
    if len(reasons) > MAX_REASONS:
        lines.append(f"- and {len(reasons) - MAX_REASONS} more reason(s) in the ledger")
    lines += _canary_lines(details)
    if row.get("report_path"):
        # The report is attached to the eval_report asset; a local path means nothing to a
        # reader elsewhere.
        lines.append(f"eval report: {asset_url(base_url, dataset, 'eval_report')}")
    run_id = row.get("dagster_run_id")
    link = run_url(base_url, run_id) if run_id else asset_url(base_url, dataset, "promotion")
    kind = "canary" if action.startswith("canary") else action
    key = f"ledger:{dataset}:{file.stem}"
    return Alert(key=key, kind=kind, title=titles[action], lines=lines, link=link, dataset=dataset)


def _canary_lines(details: dict[str, Any]) -> list[str]:
    """A canary's share (old and new for a change) and each arm's online figures."""
    if "share" not in details:
        return []
    share = float(details["share"])
    lines = [f"canary share: {share:.0%}"]
    if details.get("previous_share") is not None:
        lines = [f"canary share: {float(details['previous_share']):.0%} -> {share:.0%}"]
    arms = (details.get("online_evidence") or {}).get("arms") or {}
    for arm, figures in sorted(arms.items()):
        value, low, high = (optional_float(figures.get(k)) for k in ("value", "ci_low", "ci_high"))
        text = f"{arm}: {figures.get('rows')} rows, {figures.get('labelled_rows')} labelled"
        if value is not None:
            text += f", {figures.get('metric')} {value:.4f}"
            text += f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        lines.append(text)
    return lines


def new_ledger_alerts(paths: DatasetPaths, after: str, base_url: str) -> tuple[list[Alert], str]:
    """Alerts for the ledger entries whose file names sort after ``after`` (the name of
    the last one reported), and the name to remember next."""
    files = [f for f in ledger.entry_files(paths) if f.name > after]
    alerts = [a for f in files if (a := ledger_alert(paths, f, base_url)) is not None]
    return alerts, (files[-1].name if files else after)


def blocked_alerts(paths: DatasetPaths, base_url: str, since: float = 0.0) -> list[Alert]:
    """A partition blocked by its checks (its ``BLOCKED.json``), for markers written after
    ``since`` (epoch seconds). Keyed by the marker's write time: re-blocking after a fix
    and a new failure is a new event."""
    raw = paths.table(RAW_TABLE)
    alerts = []
    for marker in sorted(raw.glob(f"date=*/{BLOCKED_MARKER}")) if raw.exists() else []:
        if marker.stat().st_mtime <= since:
            continue
        body = json.loads(marker.read_text())
        day = body.get("partition") or marker.parent.name.removeprefix("date=")
        checks = body.get("failed_checks", [])
        lines = []
        for check in checks:
            files = ", ".join(map(str, check.get("source_files") or []))
            line = f"- {check.get('name')}: {check.get('description')}"
            lines.append(line + (f" (files: {files})" if files else ""))
        lines.append("downstream assets wait until a corrected file re-lands this day")
        alerts.append(
            Alert(
                key=f"blocked:{paths.dataset}:{day}:{body.get('written_at', '')}",
                kind="blocked",
                title=f"{paths.dataset}: partition {day} blocked by {len(checks)} failed check(s)",
                lines=lines,
                link=asset_url(base_url, paths.dataset, "raw_data", day),
                dataset=paths.dataset,
            )
        )
    return alerts


def retrain_alert(dataset: str, run_id: str, trigger: str, reason: str, base_url: str) -> Alert:
    return Alert(
        key=f"retrain:{run_id}",
        kind="retrain",
        title=f"{dataset}: retraining launched ({trigger})",
        lines=[f"reason: {reason}" if reason else "reason: (none given)"],
        link=run_url(base_url, run_id),
        dataset=dataset,
    )


def run_failure_alert(
    job: str,
    run_id: str,
    message: str,
    base_url: str,
    steps: list[tuple[str, str]] | None = None,
) -> Alert:
    """A failed run: each failed step with the first lines of its error (else the run's
    failure message), and the run's page."""
    lines = []
    for step, error in steps or []:
        first = [line for line in (error or "").splitlines() if line.strip()][:ERROR_LINES]
        lines.append(f"step {step} failed: {first[0] if first else '(no error message)'}")
        lines += [f"  {line}" for line in first[1:]]
    if not lines:
        lines = [line for line in (message or "").splitlines() if line.strip()][:ERROR_LINES]
    return Alert(
        key=f"run_failure:{run_id}",
        kind="run_failure",
        title=f"Run failed: {job} ({run_id[:8]})",
        lines=lines or ["(no error message)"],
        link=run_url(base_url, run_id),
    )


def _performance_rows(paths: DatasetPaths, days: list[str]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = []
    for day in days:
        path = paths.partition_file(PERFORMANCE_TABLE, day)
        if path.exists():
            rows += [r | {"day": day} for r in pq.read_table(path).to_pylist()[:1]]
    return rows


def digest_alert(
    paths: DatasetPaths,
    today: date,
    after_day: str,
    base_url: str,
    still_running: list[str] | None = None,
) -> tuple[Alert | None, str]:
    """The day's monitoring digest: every drift and performance day after ``after_day``
    summed up in one message (None when nothing is new), and the last data day it covers.
    Keyed by the wall-clock ``today``, so at most one a calendar day. ``still_running``:
    the dataset's runs not finished when it went out, named so the reader knows more is
    coming."""
    drift_days = [d for d in existing_partitions(paths.table(DRIFT_TABLE)) if d > after_day]
    perf_days = [d for d in existing_partitions(paths.table(PERFORMANCE_TABLE)) if d > after_day]
    summaries = [s for d in drift_days if (s := read_drift_summary(paths, d))]
    performance = _performance_rows(paths, perf_days)
    if not summaries and not performance:
        return None, after_day
    lines = []
    if summaries:
        breached = [s["day"] for s in summaries if s.get("breached")]
        shares = [float(s.get("share_drifted") or 0.0) for s in summaries]
        top = Counter(c for s in summaries for c in s.get("top_columns") or [])
        lines.append(
            f"drift: {len(summaries)} day(s) {summaries[0]['day']}..{summaries[-1]['day']}, "
            f"{len(breached)} breached, share of drifted columns up to {max(shares):.2f}"
        )
        if top:
            lines.append("most drifted: " + ", ".join(c for c, _ in top.most_common(5)))
        if breached:
            lines.append("breached days: " + ", ".join(breached[-10:]))
    if performance:
        last = performance[-1]
        late = [r["day"] for r in performance if r.get("breached")]
        value, floor = optional_float(last.get("value")), optional_float(last.get("floor"))
        text = f"performance: {len(performance)} labelled day(s), {len(late)} below the floor"
        if value is not None:
            text += f"; latest {last['day']} {last.get('primary_metric')}={value:.4f}"
            text += f" (floor {floor:.4f})" if floor is not None else ""
        lines.append(text)
    if still_running:
        lines.append(f"still running: {', '.join(still_running[:5])}")
    through = max([s["day"] for s in summaries] + [r["day"] for r in performance])
    alert = Alert(
        key=digest_key(paths.dataset, today),
        kind="digest",
        title=f"{paths.dataset}: monitoring digest for {today} (data through {through})",
        lines=lines,
        link=asset_url(base_url, paths.dataset, "drift_report"),
        dataset=paths.dataset,
    )
    return alert, through


def digest_key(dataset: str, today: date) -> str:
    return f"digest:{dataset}:{today.isoformat()}"
