"""The backtest report: the summary table (Markdown), the daily and frontier plots (PNG), the
signals' breach shares, each retrain's reason, the estimate's accuracy, as HTML and JSON."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from driftloop.backtest.policies import DAILY, STATIC
from driftloop.backtest.result import BacktestResult, frontier_points
from driftloop.data.lake import write_text_atomic
from driftloop.metrics import METRIC_LABELS
from driftloop.training.registry import experiment_id_for, make_client

ROLLING_DAYS = 7


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(result: BacktestResult) -> list[dict[str, Any]]:
    """The table of the report: one row per policy (value capture and retrain cost only
    where they mean something: not for the two ends of the scale they are relative to)."""
    rows = []
    metric = f"mean_{result.metric}"
    for row in result.summary().to_dict(orient="records"):
        anchor = row["policy"] in (STATIC, DAILY)
        rows.append(
            {
                "policy": row["policy"],
                "kind": row["kind"],
                metric: row[metric],
                "retrains": int(row["retrains"]),
                "promotions": int(row["promotions"]) if row["kind"] == "trigger" else None,
                "value_capture": None if anchor else row["value_capture"],
                "retrain_cost": None if anchor else row["retrain_cost"],
                "cpu_seconds": row["cpu_seconds"],
                "periodic_line": row.get("frontier_capture") if row["kind"] == "trigger" else None,
            }
        )
    return rows


def signal_rows(result: BacktestResult) -> list[dict[str, Any]]:
    """Per trigger policy: the share of days each signal breached, and the estimate's mean
    absolute error against the realised daily metric beside the constant guess's."""
    rows = []
    for row in result.summary().to_dict(orient="records"):
        if row["kind"] != "trigger":
            continue
        rows.append(
            {
                "policy": row["policy"],
                "drift breached": row.get("breach_share_drift"),
                "estimated breached": row.get("breach_share_estimated"),
                "realised breached": row.get("breach_share_performance"),
                "any breached": row.get("breach_share_any"),
                "estimate MAE": row.get("estimate_mae"),
                "holdout-metric guess MAE": row.get("holdout_guess_mae"),
                "days": row.get("estimate_days"),
            }
        )
    return rows


def signals_markdown(result: BacktestResult) -> str:
    rows = signal_rows(result)
    if not rows:
        return ""
    head = "| policy | " + " | ".join(k for k in rows[0] if k != "policy") + " |"
    lines = [head, "|---|" + "---:|" * (len(rows[0]) - 1)]
    for row in rows:
        cells = [_fmt(v, 3) for k, v in row.items() if k != "policy"]
        lines.append(f"| {row['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(result: BacktestResult) -> str:
    rows = summary_rows(result)
    label = METRIC_LABELS.get(result.metric, result.metric)
    head = (
        f"| policy | mean daily {label} | retrains | promotions | value capture | retrain cost "
        "| periodic line at that cost | CPU seconds |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        digits = 4 if result.higher_is_better else 3
        lines.append(
            f"| {row['policy']} | {_fmt(row[f'mean_{result.metric}'], digits)} | "
            f"{row['retrains']} | {_fmt(row['promotions'])} | {_fmt(row['value_capture'], 2)} | "
            f"{_fmt(row['retrain_cost'], 3)} | {_fmt(row['periodic_line'], 2)} | "
            f"{_fmt(row['cpu_seconds'], 0)} |"
        )
    return "\n".join(lines)


def render_frontier(result: BacktestResult, path: Path) -> Path | None:
    """Value capture against retrain cost: the periodic line (never at (0, 0), every day at
    (1, 1), the schedules between) and every trigger policy's point. None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    summary = result.summary()
    line = frontier_points(summary)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    ax.plot([c for c, _ in line], [v for _, v in line], "-", color="grey", label="periodic line")
    for row in summary.to_dict(orient="records"):
        cost = 0.0 if row["policy"] == STATIC else row["retrain_cost"]
        capture = {STATIC: 0.0, DAILY: 1.0}.get(row["policy"], row["value_capture"])
        if row["kind"] == "schedule":
            ax.scatter([cost], [capture], color="grey", s=18, zorder=3)
            ax.annotate(
                row["policy"],
                (cost, capture),
                fontsize=7,
                xytext=(4, -10),
                textcoords="offset points",
            )
        else:
            ax.scatter([cost], [capture], s=70, marker="*", zorder=4, label=row["policy"])
    ax.set_xscale("symlog", linthresh=0.02)
    ax.set_xlabel("retrain cost (retrains / retrains of every_day)")
    ax.set_ylabel("value capture")
    ax.set_title(f"{result.dataset}: value capture against retrain cost", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def render_plot(result: BacktestResult, path: Path) -> Path | None:
    """Daily realised metric per policy (7-day rolling mean; faint: the raw daily values of
    every_day), retrains marked (filled: promoted, hollow: rejected by the gate). None when
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    daily = result.daily_frame()
    daily["day"] = pd.to_datetime(daily["day"])
    label = METRIC_LABELS.get(result.metric, result.metric)
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, policy in enumerate(result.policies):
        part = daily[daily["policy"] == policy.name].set_index("day")
        smooth = part["metric"].rolling(ROLLING_DAYS, min_periods=1).mean()
        colour = colours[i % len(colours)]
        width = 2.2 if policy.kind == "trigger" else 1.3
        ax.plot(smooth.index, smooth.to_numpy(), color=colour, lw=width, label=policy.name)
        if policy.name == DAILY:
            continue  # a marker every day says nothing
        retrains = part[part["retrain"]]
        promoted = retrains[retrains["promoted"]]
        rejected = retrains[~retrains["promoted"]]
        size = 36 if policy.kind == "trigger" else 16
        ax.scatter(promoted.index, smooth.loc[promoted.index], s=size, color=colour, zorder=3)
        ax.scatter(
            rejected.index,
            smooth.loc[rejected.index],
            s=size,
            facecolors="white",
            edgecolors=colour,
            zorder=3,
        )
    ax.set_ylabel(f"realised {label} ({ROLLING_DAYS}-day rolling mean)")
    ax.set_title(
        f"{result.dataset}: realised {label} per retraining policy "
        f"({result.config.start} to {result.config.end}); dots: retrains "
        "(filled = promoted, hollow = rejected by the gate)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>-</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v, 4))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path | None, alt: str) -> str:
    if path is None or not path.exists():
        return ""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{encoded}">'


def render_html(result: BacktestResult, plot: Path | None, frontier: Path | None = None) -> str:
    label = METRIC_LABELS.get(result.metric, result.metric)
    image = _image(plot, "daily realised metric") + _image(frontier, "periodic frontier")
    events = []
    for policy in result.policies:
        if policy.kind != "trigger":
            continue
        for e in policy.events:
            events.append(
                {
                    "policy": policy.name,
                    "day": e["day"],
                    "promoted": e["promoted"],
                    "trigger": e["reason"],
                    "gate": e.get("gate", ""),
                }
            )
    config = json.dumps(result.config.to_dict(), indent=2, default=str)
    first = json.dumps(result.first_model, indent=2, default=str)
    direction = "higher" if result.higher_is_better else "lower"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{result.dataset} retraining backtest</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
img {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(result.dataset)}: retraining-policy backtest</h1>
<p>{result.config.start} to {result.config.end}, realised {label} ({direction} is better) of
every day as scored by each policy's model. Value capture = (policy - {STATIC}) /
({DAILY} - {STATIC}), sign-adjusted; retrain cost = retrains / retrains of {DAILY}.</p>
{_table_html(summary_rows(result))}
{image}
<h2>Signals: share of days breached; performance estimate against realised</h2>
{_table_html(signal_rows(result))}
<h2>Trigger retrains (the cooldown counts from every retrain launched, promoted or not)</h2>
{_table_html(events)}
<h2>First model (shared by every policy)</h2>
<pre>{html.escape(first)}</pre>
<h2>Configuration</h2>
<pre>{html.escape(config)}</pre>
<h2>Timings (seconds)</h2>
<pre>{html.escape(json.dumps(result.timings, indent=2))}</pre>
</body></html>
"""


def report_stem(result: BacktestResult) -> str:
    return f"backtest_{result.config.start}_{result.config.end}"


def write_report(result: BacktestResult, folder: Path) -> dict[str, Path]:
    """``<stem>.png``, ``<stem>.html`` and ``<stem>.json`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = report_stem(result)
    paths: dict[str, Path] = {}
    plot = render_plot(result, folder / f"{stem}.png")
    if plot is not None:
        paths["png"] = plot
    frontier = render_frontier(result, folder / f"{stem}_frontier.png")
    if frontier is not None:
        paths["frontier_png"] = frontier
    html_text = render_html(result, plot, frontier)
    paths["html"] = write_text_atomic(html_text, folder / f"{stem}.html")
    body = {**result.to_dict(), "table": summary_rows(result), "signals": signal_rows(result)}
    paths["json"] = write_text_atomic(
        json.dumps(body, indent=2, default=str) + "\n", folder / f"{stem}.json"
    )
    return paths


def log_to_mlflow(
    result: BacktestResult,
    files: dict[str, Path],
    tracking_uri: str,
    artifact_root: Path | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """One run in the experiment ``<dataset>-backtest``: the settings as params, per policy
    the mean metric, retrains, value capture and retrain cost as metrics, the report files
    as artifacts. Returns the run id."""
    client = make_client(tracking_uri)
    name = f"{result.dataset}-backtest"
    experiment = experiment_id_for(client, name, tracking_uri, artifact_root)
    run = client.create_run(
        experiment,
        run_name=f"{result.dataset} {result.config.start}..{result.config.end}",
        tags={"driftloop.dataset": result.dataset, **(tags or {})},
    )
    run_id = run.info.run_id
    config = result.config.to_dict()
    params = {k: v for k, v in config.items() if k != "triggers"}
    for trigger in config["triggers"]:
        params |= {f"{trigger['name']}.{k}": v for k, v in trigger.items() if k != "name"}
    for key, value in params.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        client.log_param(run_id, key[:250], text[:6000])
    for row in result.summary().to_dict(orient="records"):
        keys = (f"mean_{result.metric}", "retrains", "value_capture", "retrain_cost")
        for key in (*keys, "cpu_seconds", "breach_share_any", "estimate_mae"):
            value = float(row.get(key, math.nan))
            if math.isfinite(value):
                client.log_metric(run_id, f"{row['policy']}.{key}", value)
    for key, value in result.timings.items():
        client.log_metric(run_id, f"seconds.{key}", float(value))
    for path in files.values():
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id
