"""Self-contained HTML for an evaluation: inline CSS and SVG, no external assets."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from driftloop.metrics import METRIC_LABELS, expected_calibration_error

if TYPE_CHECKING:
    from driftloop.evaluation.comparison import EvalResult

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1f2933;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #d9e2ec;padding-bottom:.2rem}
.sub{color:#52606d}table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e4e7eb;text-align:right}
th{background:#f5f7fa}td.l,th.l{text-align:left}
.good{color:#0e7c3a}.bad{color:#b42318}tr.fail td{background:#fdecea}
.decision{padding:.8rem 1rem;border-radius:6px;margin:1rem 0}
.decision.promoted{background:#e6f4ea;border:1px solid #0e7c3a}
.decision.rejected{background:#fdecea;border:1px solid #b42318}
.decision.none{background:#f5f7fa;border:1px solid #9aa5b1}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dt{color:#52606d}
.small{font-size:.85rem;color:#52606d}
"""


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return escape(str(value))


def _table(frame: pd.DataFrame, signed: tuple[str, ...] = (), fail_rows: set[int] = frozenset()):
    head = "".join(
        f'<th class="{"l" if frame[c].dtype == object else ""}">{escape(str(c))}</th>'
        for c in frame.columns
    )
    body = []
    for i, row in frame.iterrows():
        cells = []
        for c in frame.columns:
            v = row[c]
            cls = "l" if frame[c].dtype == object else ""
            text = _fmt(v.item() if hasattr(v, "item") else v, c in signed)
            if c in signed and isinstance(v, float) and not math.isnan(v):
                cls += " good" if v > 0 else " bad" if v < 0 else ""
            cells.append(f'<td class="{cls.strip()}">{text}</td>')
        tr = ' class="fail"' if i in fail_rows else ""
        body.append(f"<tr{tr}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _overall_table(overall: pd.DataFrame) -> str:
    """Metric, which direction is better, both values and the change, coloured by whether
    the change is an improvement (the sign-adjusted ``diff``)."""
    head = "".join(
        f'<th class="{"l" if c in ("metric", "better") else ""}">{c}</th>'
        for c in ("metric", "better", "challenger", "reference", "change")
    )
    body = []
    for row in overall.to_dict(orient="records"):
        diff = row["diff"]
        tone = "" if math.isnan(diff) or diff == 0 else " good" if diff > 0 else " bad"
        better = row["better"] or "&ndash;"
        body.append(
            f"<tr><td class='l'>{escape(str(row['metric']))}</td><td class='l'>{better}</td>"
            f"<td>{_fmt(float(row['challenger']))}</td><td>{_fmt(float(row['reference']))}</td>"
            f"<td class='{tone.strip()}'>{_fmt(float(row['change']), True)}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _importance_bars(overall: pd.DataFrame, top: int = 15) -> str:
    """Horizontal bars: mean |contribution| per feature, largest first."""
    rows = overall.nlargest(top, "mean_abs_contribution")
    width, label_w, bar_h = 640, 170, 18
    longest = float(rows["mean_abs_contribution"].max()) or 1.0
    height = bar_h * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="feature importance (mean absolute contribution)" '
        'class="importance-chart">'
    ]
    for i, row in enumerate(rows.itertuples(index=False)):
        y = 5 + i * bar_h
        length = (width - label_w - 70) * row.mean_abs_contribution / longest
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">'
            f"{escape(str(row.feature))}</text>"
            f'<rect x="{label_w}" y="{y + 2}" width="{length:.1f}" height="{bar_h - 5}" '
            f'fill="#1f6feb"><title>{escape(str(row.feature))}: '
            f"{row.mean_abs_contribution:.4f}</title></rect>"
            f'<text x="{label_w + length + 4:.1f}" y="{y + 13}" font-size="11">'
            f"{row.mean_abs_contribution:.4f}</text>"
        )
    parts.append(
        f'<text x="{label_w}" y="{height - 6}" font-size="11" fill="#52606d">'
        "mean |contribution| to the raw score</text></svg>"
    )
    return "".join(parts)


def _importance_grid(part: pd.DataFrame, features: list[str], column: str) -> str:
    """One slice column: a row per value, a cell per feature shaded by its importance."""
    values = list(dict.fromkeys(part["value"]))
    grid = part.pivot_table(index="value", columns="feature", values="mean_abs_contribution")
    top = float(grid[features].to_numpy().max()) or 1.0
    cell_w, cell_h, label_w, head_h = 70, 20, 130, 80
    width, height = label_w + cell_w * len(features), head_h + cell_h * len(values)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="importance by {escape(column)}">'
    ]
    for j, feature in enumerate(features):
        x = label_w + j * cell_w + cell_w / 2
        parts.append(
            f'<text x="{x}" y="{head_h - 6}" font-size="11" transform="rotate(-40 {x} '
            f'{head_h - 6})">{escape(feature)}</text>'
        )
    for i, value in enumerate(values):
        y = head_h + i * cell_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" font-size="11">'
            f"{escape(str(value))}</text>"
        )
        for j, feature in enumerate(features):
            v = float(grid.loc[value, feature])
            shade = 0.08 + 0.85 * v / top
            parts.append(
                f'<rect x="{label_w + j * cell_w}" y="{y}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill="#1f6feb" fill-opacity="{shade:.2f}">'
                f"<title>{escape(column)}={escape(str(value))}, {escape(feature)}: "
                f"{v:.4f}</title></rect>"
                f'<text x="{label_w + j * cell_w + 4}" y="{y + 14}" font-size="10">{v:.3f}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _importance_section(importance: pd.DataFrame, model: str, top: int = 8) -> str:
    overall = importance[importance["slice"] == "(all)"]
    features = overall.nlargest(top, "mean_abs_contribution")["feature"].tolist()
    out = [
        "<h2 id='importance'>Feature importance</h2>",
        f"<p>Mean absolute contribution of each feature to {escape(model)}'s raw score "
        "(log-odds for a binary task) on the labelled holdout rows: the model's own "
        "additive contributions (TreeSHAP for LightGBM, coefficient times input for the "
        "linear baseline).</p>",
        _importance_bars(overall),
    ]
    for column, part in importance[importance["slice"] != "(all)"].groupby("slice", sort=False):
        out.append(f"<h3>By {escape(str(column))} (top {len(features)} features)</h3>")
        out.append(_importance_grid(part, features, str(column)))
    return "\n".join(out)


def _reliability_svg(calibration: pd.DataFrame) -> str:
    """Mean predicted vs observed rate per bin, one polyline per model, on the diagonal."""
    size, pad = 320, 36
    top = max(0.05, float(calibration[["mean_predicted", "observed_rate"]].to_numpy().max()) * 1.05)
    top = min(1.0, top)

    def xy(p: float, o: float) -> str:
        x = pad + (size - 2 * pad) * p / top
        y = size - pad - (size - 2 * pad) * o / top
        return f"{x:.1f},{y:.1f}"

    colours = ["#1f6feb", "#d97706", "#7c3aed"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'role="img" aria-label="reliability diagram">',
        f'<rect x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}" '
        'fill="none" stroke="#cbd2d9"/>',
        f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#9aa5b1" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="11">'
        f"mean predicted (0 to {top:.2f})</text>",
        f'<text x="12" y="{size / 2}" font-size="11" transform="rotate(-90 12 {size / 2})" '
        'text-anchor="middle">observed rate</text>',
    ]
    for k, (model, part) in enumerate(calibration.groupby("model", sort=False)):
        colour = colours[k % len(colours)]
        pairs = list(zip(part.mean_predicted, part.observed_rate, strict=True))
        points = " ".join(xy(p, o) for p, o in pairs)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}"/>')
        for p, o in pairs:
            cx, cy = xy(p, o).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
        parts.append(
            f'<text x="{pad + 6}" y="{pad + 14 + 14 * k}" font-size="11" fill="{colour}">'
            f"{escape(str(model))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render(result: EvalResult, decision: Any = None, context: dict[str, Any] | None = None):
    """The report as one HTML string. ``context``: extra facts shown in the header."""
    context = context or {}
    label = METRIC_LABELS.get(result.metric, result.metric)
    title = context.pop(
        "title", f"{result.dataset}: {result.challenger_name} vs {result.reference_name}"
    )
    pct = f"{result.confidence:.0%}"
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='sub'>Evaluation report &middot; dataset <b>{escape(result.dataset)}</b>"
        f" &middot; task {escape(result.task.value)}</p>",
    ]

    facts = {
        "challenger": result.challenger_name,
        "reference": result.reference_name,
        "labelled holdout rows": f"{result.n_rows:,}",
    }
    if result.n_positive is not None:
        rate = result.n_positive / result.n_rows if result.n_rows else math.nan
        facts["positives"] = f"{result.n_positive:,} ({rate:.1%})"
    facts |= {k: str(v) for k, v in context.items()}
    out.append(
        "<dl>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts.items())
        + "</dl>"
    )

    out.append("<h2>Decision</h2>")
    if decision is None:
        out.append("<div class='decision none'>No gate decision was made.</div>")
    else:
        cls = "promoted" if decision.promote else "rejected"
        verdict = "PROMOTE to champion" if decision.promote else "REJECT: champion stays"
        reasons = "".join(f"<li>{escape(r)}</li>" for r in decision.reasons)
        out.append(f"<div class='decision {cls}'><b>{verdict}</b><ul>{reasons}</ul></div>")

    out.append(f"<h2>Paired comparison on {escape(label)}</h2>")
    out.append(
        f"<p>Difference (positive = challenger better): <b>{_fmt(result.diff, True)}</b>; "
        f"bootstrap mean {_fmt(result.boot_mean, True)}; {pct} percentile interval "
        f"<b>{_fmt(result.ci_low, True)}</b> to <b>{_fmt(result.ci_high, True)}</b> from "
        f"{result.bootstrap_samples} paired resamples of {escape(result.resampled)}, the same for "
        f"both models (seed {result.seed}).</p>"
    )

    out.append("<h2>Overall metrics</h2>")
    out.append(_overall_table(result.overall))
    out.append(
        "<p class='small'>change = challenger &minus; reference; <i>better</i> says which "
        "direction is an improvement for that metric (green: the challenger improved, "
        "red: it got worse).</p>"
    )

    out.append("<h2>Slices</h2>")
    if result.slices.empty:
        out.append("<p>The contract declares no slices.</p>")
    else:
        failed = set(getattr(decision, "failed_slices", []) or [])
        fail_rows = {
            i for i, r in result.slices.iterrows() if f"{r['slice']}={r['value']}" in failed
        }
        frame = result.slices.rename(
            columns={"challenger": f"challenger {label}", "reference": f"reference {label}"}
        )
        out.append(_table(frame, signed=("diff", "ci_low", "ci_high"), fail_rows=fail_rows))
        out.append(
            f"<p class='small'>ci_low / ci_high: {pct} paired bootstrap interval of the slice "
            "difference, from the same resamples as the overall metric.</p>"
        )
    if getattr(decision, "slice_note", ""):
        out.append(f"<p class='slice-note'><b>Slice gating:</b> {escape(decision.slice_note)}</p>")
    if result.skipped_slices:
        out.append(f"<p>Not in the holdout, not checked: {escape(str(result.skipped_slices))}</p>")

    if result.importance is not None and not result.importance.empty:
        out.append(_importance_section(result.importance, result.challenger_name))

    if result.calibration is not None and not result.calibration.empty:
        out.append("<h2>Calibration</h2>")
        eces = ", ".join(
            f"{escape(str(m))}: {expected_calibration_error(result.calibration, m):.4f}"
            for m in result.calibration["model"].unique()
        )
        out.append(f"<p>Expected calibration error (10 equal-count bins): {eces}</p>")
        out.append(_reliability_svg(result.calibration))
        out.append(_table(result.calibration))

    out.append("</body></html>")
    return "\n".join(out)


def render_report(result: EvalResult, decision: Any = None, **context: Any) -> str:
    """A self-contained HTML report; keyword arguments are extra facts for its header."""
    return render(result, decision, context)
