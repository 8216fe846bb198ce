"""A contract drafted from a sample file: every value inferred from the data, with a reason.

`draft_contract` reads a CSV or Parquet sample and proposes the event time, the task, id
columns, the columns' rules, the features (leaving out the target's components, columns
that add up to it, columns recorded with the outcome or after the event, columns that
predict the target suspiciously well on their own, constants and identifiers), slices,
label delay and the training window. `render` writes it as YAML with a comment on every
inferred value. Nothing is keyed on column names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.contract import reserved_column_reason
from driftloop.data.contract_sql import check_expression, sandboxed_connection
from driftloop.drafting.profiling import (
    LEAK_AUC,
    LEAK_R2,
    MAX_ALLOWED_VALUES,
    MAX_CATEGORIES,
    MAX_CATEGORY_SHARE,
    MIN_SEEN_PER_VALUE,
    Profile,
    identity_members,
    null_limit,
    numeric_rule,
    profile,
    read_sample,
    recorded_with_outcome,
    single_column_score,
    yaml_key,
)

if TYPE_CHECKING:
    import pandas as pd


MAX_SLICES = 2
MAX_SLICE_VALUES = 12


@dataclass
class Line:
    """One value of the contract and why it was chosen."""

    value: str
    why: str


@dataclass
class Draft:
    name: str
    sample: Path
    rows: int
    event_time: dict[str, Line]
    target: dict[str, Line]
    task: Line
    label_delay: Line
    start: Line
    id_columns: Line
    columns: dict[str, Line]
    extra_features: dict[str, Line]
    features: dict[str, str]  # name -> why it is in
    left_out: dict[str, str]  # name -> why it is not
    slices: Line
    training: dict[str, Line]
    notes: list[str] = field(default_factory=list)


def _label(frame: pd.DataFrame, target_sql: str) -> pd.Series:
    """The target over the sample, computed in the contract SQL sandbox."""
    con = sandboxed_connection()
    try:
        con.register("sample", frame)
        result = con.execute(f"SELECT {target_sql} AS label FROM sample").fetchdf()["label"]
    finally:
        con.close()
    return result


def _event_time(frame: pd.DataFrame, profiles: dict[str, Profile], given: str | None):
    """(column or None, expression or None, why, the rows' event times)."""
    import pandas as pd

    if given is not None:
        if given in frame.columns:
            return given, None, "given with --time", pd.to_datetime(frame[given])
        check_expression(given)
        times = pd.to_datetime(_label(frame, f"CAST(({given}) AS TIMESTAMP)"))
        return None, given, "given with --time", times
    stamps = [p for p in profiles.values() if p.kind == "timestamp" and p.nulls < p.rows]
    moments = [p for p in stamps if not p.date_only]
    if moments:
        # The event is the earliest moment of a row: other timestamps come at or after it.
        def earliest(p: Profile) -> tuple[float, int]:
            others = [frame[o.name] for o in moments if o.name != p.name]
            share = sum((frame[p.name] <= o).mean() for o in others) / max(len(others), 1)
            return (share, -p.nulls)

        chosen = max(moments, key=earliest)
        why = (
            "the only timestamp column"
            if len(moments) == 1
            else ("the earliest of the timestamp columns in most rows (the others come after it)")
        )
        return chosen.name, None, why, frame[chosen.name]
    hours = [
        p for p in profiles.values()
        if p.kind == "numeric" and p.integer and p.low is not None and p.low >= 0
        and p.high is not None and p.high <= 23 and p.distinct > 6
    ]  # fmt: skip
    if stamps and hours:
        day, hour = stamps[0].name, hours[0].name
        expression = f'CAST("{day}" AS DATE) + to_hours(CAST("{hour}" AS BIGINT))'
        why = f"a date column ({day}) plus an hour column ({hour}: whole numbers 0-23)"
        times = pd.to_datetime(_label(frame, f"CAST(({expression}) AS TIMESTAMP)"))
        return None, expression, why, times
    raise ValueError(
        "no timestamp column (nor a date plus an hour column) found in the sample: give the "
        "event time with --time COLUMN_OR_SQL (see docs/contracts.md#event_time)"
    )


def _task(label: pd.Series) -> tuple[str, str]:
    present = label.dropna()
    if len(present) == 0:
        raise ValueError("the target is NULL on every row of the sample")
    values = set(present.astype(float).unique())
    if values <= {0.0, 1.0}:
        share = float(present.astype(float).mean())
        return "binary", f"the target takes two values in the sample ({share:.1%} positive)"
    return "regression", f"the target is a number with {len(values)} distinct values"


def _leaks(
    frame: pd.DataFrame,
    profiles: dict[str, Profile],
    candidates: list[str],
    label: pd.Series,
    target_value: pd.Series | None,
    binary: bool,
    times: pd.Series,
) -> dict[str, str]:
    """Candidates that would leak the outcome, each with the evidence."""
    found: dict[str, str] = {}
    for name in candidates:
        item = profiles[name]
        if item.kind == "timestamp":
            later = frame[name] >= times
            seen = frame[name].notna() & times.notna()
            if seen.sum() and later[seen].mean() >= 0.99 and (frame[name] > times)[seen].any():
                found[name] = (
                    f"recorded after the event: at or after the event time in "
                    f"{later[seen].mean():.0%} of rows, so unknown when a prediction is made"
                )
        elif (hit := recorded_with_outcome(frame[name], label)) is not None:
            found[name] = (
                f"missing exactly when the target is ({hit[0]} of its {hit[1]} missing rows): "
                "recorded with the outcome, so known only after the event"
            )
    numeric = [n for n in candidates if profiles[n].kind == "numeric" and n not in found]
    if target_value is not None:
        for name in identity_members(frame, target_value, numeric):
            found[name] = "adds up to the target with other columns (a linear identity fits it)"
    for name in candidates:
        if name in found or profiles[name].kind == "timestamp":
            continue
        score = single_column_score(frame[name], label, binary)
        limit = LEAK_AUC if binary else LEAK_R2
        if score is not None and score >= limit:
            metric = "ROC AUC" if binary else "R^2"
            found[name] = (
                f"predicts the target suspiciously well on its own ({metric} {score:.3f} "
                f">= {limit}): most likely known only after the event"
            )
    return found


def _column_line(item: Profile, is_event: bool) -> Line:
    rule: dict[str, object] = {"type": item.kind}
    why = [f"{item.kind}"]
    if item.nulls == 0:
        rule["nullable"] = False
        why.append("no nulls in the sample (a null row is quarantined)")
    else:
        rule["max_null_fraction"] = null_limit(item)
        why.append(
            f"{item.null_share:.1%} null (worst day {item.max_daily_null_share:.1%}); "
            "limit per partition with room for bad days"
        )
    if is_event:
        rule = {"type": "timestamp", "nullable": False}
    if item.kind == "numeric" and item.low is not None and item.calendar:
        why.append("one value per day (a part of the date): a sample's days do not show its range")
    elif item.kind == "numeric" and item.low is not None and item.low == item.high:
        why.append(f"always {item.low:g} in the sample: no range to widen")
    elif item.kind == "numeric" and item.low is not None:
        rule["min"], rule["max"] = numeric_rule(item)
        why.append(f"seen {item.low:g} to {item.high:g}, widened by the range on each side")
    if (
        item.kind == "categorical"
        and item.values is not None
        and item.distinct <= MAX_ALLOWED_VALUES
        and item.rows >= 200
        and min(item.values.values()) >= MIN_SEEN_PER_VALUE
    ):
        rule["allowed"] = sorted(item.values)
        why.append(f"all {len(item.values)} values seen at least {MIN_SEEN_PER_VALUE} times")
    elif item.kind == "categorical":
        why.append(f"{item.distinct} distinct values: no fixed list")
    parts = []
    for key, value in rule.items():
        if key == "allowed":
            text = "[" + ", ".join(json.dumps(v) for v in value) + "]"  # type: ignore[union-attr]
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            text = f"{value:g}" if abs(value) < 1e15 else repr(value)
        else:
            text = str(value)
        parts.append(f"{key}: {text}")
    return Line("{" + ", ".join(parts) + "}", "; ".join(why))


def _second_share(item: Profile) -> float:
    counts = sorted((item.values or {}).values(), reverse=True)
    return counts[1] / sum(counts) if len(counts) > 1 else 0.0


def _slices(features: list[str], profiles: dict[str, Profile]) -> list[str]:
    """Up to two features with a few values of which at least two are common (a group that
    is 1% of rows never reaches the size a slice is gated at), categorical first."""
    candidates = [
        n for n in features
        if n in profiles and 2 <= profiles[n].distinct <= MAX_SLICE_VALUES
        and profiles[n].kind != "timestamp" and not profiles[n].calendar
        and _second_share(profiles[n]) >= 0.1
    ]  # fmt: skip
    order = sorted(
        candidates, key=lambda n: (profiles[n].kind != "categorical", -_second_share(profiles[n]))
    )
    return order[:MAX_SLICES]


def draft_contract(
    name: str,
    sample: Path,
    target: str,
    time: str | None = None,
    label_delay: str | None = None,
    timezone: str = "UTC",
) -> Draft:
    """Everything a contract needs, inferred from the sample (see the module docstring)."""
    import pandas as pd

    frame = read_sample(sample)
    # A reserved name cannot be declared (the lake or the features table owns it), and the
    # contract reads columns by their names in the files: such a column is left out.
    reserved = {c: why for c in frame.columns if (why := reserved_column_reason(c)) is not None}
    frame = frame.drop(columns=list(reserved))
    profiles = profile(frame, None)
    try:
        column, expression, time_why, times = _event_time(frame, profiles, time)
    except ValueError as error:
        if not reserved:
            raise
        raise ValueError(
            f"{error}; the columns {sorted(reserved)} were left out for their reserved names: "
            "rename them in the files to use them"
        ) from None
    days = pd.to_datetime(times).dt.strftime("%Y-%m-%d")
    profiles = profile(frame, days)

    target_is_column = target in frame.columns
    target_sql = json.dumps(target) if target_is_column else f"({target})"
    components = {target} if target_is_column else check_expression(target)
    label = _label(frame, f"CAST({target_sql} AS DOUBLE)")
    task, task_why = _task(label)
    value_columns = [c for c in components if c in frame and profiles[c].kind == "numeric"]
    target_value = label if task == "regression" else (
        frame[value_columns[0]] if len(value_columns) == 1 else None)  # fmt: skip

    inputs = {column} if column else check_expression(expression or "")
    left_out: dict[str, str] = {}
    for c, why in reserved.items():
        left_out[c] = f"a reserved name ({why}): rename it in the files to use it"
    for c in components & set(frame.columns):
        left_out[c] = "the target or one of its components"
    ids = [
        p.name for p in profiles.values()
        if p.nulls == 0 and p.distinct == p.rows and p.kind in ("categorical", "numeric")
        and (p.kind == "categorical" or p.integer) and p.name not in inputs | components
    ]  # fmt: skip
    for p in profiles.values():
        if p.name in left_out or p.name in inputs:
            continue
        if p.distinct <= 1:
            left_out[p.name] = "constant in the sample: carries no information"
        elif p.name in ids:
            left_out[p.name] = "unique on every row: an identifier, not a feature"
        elif p.kind == "categorical" and (
            p.distinct > MAX_CATEGORIES or p.distinct > MAX_CATEGORY_SHARE * p.rows
        ):
            left_out[p.name] = f"{p.distinct} distinct values: too many to learn from as a category"
    candidates = [c for c in frame.columns if c not in left_out and c not in inputs]
    binary = task == "binary"
    left_out |= _leaks(frame, profiles, candidates, label, target_value, binary, times)
    features = {
        c: profiles[c].kind
        for c in candidates
        if c not in left_out and profiles[c].kind != "timestamp"
    }
    for c in candidates:
        if c not in left_out and profiles[c].kind == "timestamp":
            left_out[c] = "a timestamp: not a model input itself"

    extra: dict[str, Line] = {}
    taken = set(frame.columns)
    has_clock = bool((pd.to_datetime(times).dt.normalize() != pd.to_datetime(times)).any())
    proposals = [("weekday", "dayofweek(event_time)", "day of the week of the event (0 = Sunday)")]
    if has_clock:
        proposals.insert(0, ("hour", "hour(event_time) + minute(event_time) / 60.0",
                             "time of day of the event, in hours"))  # fmt: skip
    for base, sql, why in proposals:
        feature = base if base not in taken else f"event_{base}"
        while feature in taken:
            feature += "_"
        extra[feature] = Line(json.dumps(sql), why)
        features = {feature: why} | features
        taken.add(feature)
    for c in list(features):
        if c in profiles:
            features[c] = profiles[c].kind

    columns = {c: _column_line(profiles[c], c == column) for c in frame.columns}
    event = {"timezone": Line(json.dumps(timezone), "zone of the partition days (--timezone)")}
    if column:
        event = {"column": Line(yaml_key(column), time_why)} | event
    else:
        event = {"expression": Line(json.dumps(expression), time_why)} | event
    first = pd.to_datetime(times).dropna().quantile(0.005)
    start = date(first.year, first.month, 1)
    span = (pd.to_datetime(times).max() - pd.to_datetime(times).min()).days + 1
    per_day = len(frame) / max(span, 1)
    slices = _slices(list(features), profiles)
    holdout = 7
    slice_note = (
        f"the sample holds about {per_day:.0f} rows a day, a {holdout}-day holdout about "
        f"{per_day * holdout:.0f}: a slice is gated from 500 rows (see docs/contracts.md#slices)"
    )
    return Draft(
        name=name,
        sample=sample,
        rows=len(frame),
        event_time=event,
        target={
            "column" if target_is_column else "expression": Line(
                yaml_key(target) if target_is_column else json.dumps(target), "given with --target"
            )
        },
        task=Line(task, task_why),
        label_delay=Line(
            json.dumps(label_delay or "1d"),
            "given with --label-delay"
            if label_delay
            else "how long after the event the target is known: not in a sample, one day assumed",
        ),
        start=Line(start.isoformat(), "first month of the sample's event times"),
        id_columns=Line(
            "[" + ", ".join(yaml_key(i) for i in ids[:1]) + "]",
            "unique and never null in the sample"
            if ids
            else "no column is unique in the sample (online serving needs one)",
        ),
        columns=columns,
        extra_features=extra,
        features=features,
        left_out=left_out,
        slices=Line("[" + ", ".join(yaml_key(s) for s in slices) + "]", slice_note),
        training={
            "window_days": Line("60", "days of labelled data a model trains on"),
            "holdout_days": Line(str(holdout), "latest days kept out to evaluate and gate"),
            "validation_days": Line("7", "days before the holdout for early stopping"),
        },
        notes=[f"{c}: {why}" for c, why in left_out.items()],
    )
