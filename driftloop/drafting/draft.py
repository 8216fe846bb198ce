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
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract, Task, reserved_column_reason
from driftloop.data.contract_sql import check_expression
from driftloop.data.raw_table import conform
from driftloop.data.reading import Reject, read_landed
from driftloop.data.rules import cast_and_check
from driftloop.drafting.columns import (
    carried_by,
    column_line,
    draft_slices,
    partition_bounds,
)
from driftloop.drafting.fits import choose_rolling, history_leaks
from driftloop.drafting.ids import draft_id_columns
from driftloop.drafting.profiling import (
    LEAK_AUC,
    LEAK_R2,
    MAX_CATEGORIES,
    MAX_CATEGORY_SHARE,
    Profile,
    identity_members,
    profile,
    read_sample,
    recorded_with_outcome,
    single_column_score,
    yaml_key,
)
from driftloop.drafting.record import Draft, Line
from driftloop.drafting.render import render
from driftloop.drafting.targets import evaluate, resolve_target

if TYPE_CHECKING:
    import pandas as pd


def _event_time(frame: pd.DataFrame, profiles: dict[str, Profile], given: str | None):
    """(column or None, expression or None, why, the rows' event times)."""
    import pandas as pd

    if given is not None:
        if given in frame.columns:
            return given, None, "given with --time", pd.to_datetime(frame[given])
        check_expression(given)
        times = pd.to_datetime(evaluate(frame, f"CAST(({given}) AS TIMESTAMP)"))
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
        p
        for p in profiles.values()
        if p.kind == "numeric"
        and p.integer
        and p.low is not None
        and p.low >= 0
        and p.high is not None
        and p.high <= 23
        and p.distinct > 6
    ]
    if stamps and hours:
        day, hour = stamps[0].name, hours[0].name
        expression = f'CAST("{day}" AS DATE) + to_hours(CAST("{hour}" AS BIGINT))'
        why = f"a date column ({day}) plus an hour column ({hour}: whole numbers 0-23)"
        times = pd.to_datetime(evaluate(frame, f"CAST(({expression}) AS TIMESTAMP)"))
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


def draft_contract(
    name: str,
    sample: Path,
    target: str,
    time: str | None = None,
    label_delay: str | None = None,
    timezone: str = "UTC",
    positive: str | None = None,
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

    choice = resolve_target(frame, target, positive)
    components = choice.components
    label = evaluate(frame, f"CAST({choice.sql} AS DOUBLE)")
    task, task_why = _task(label)
    value_columns = [c for c in components if c in frame and profiles[c].kind == "numeric"]
    target_value = label if task == "regression" else None
    if target_value is None and len(value_columns) == 1:
        target_value = frame[value_columns[0]]

    inputs = {column} if column else check_expression(expression or "")
    left_out: dict[str, str] = {}
    for c, why in reserved.items():
        left_out[c] = f"a reserved name ({why}): rename it in the files to use it"
    for c in components & set(frame.columns):
        left_out[c] = "the target or one of its components"
    for p in profiles.values():
        if p.name in left_out or p.name in inputs:
            continue
        keyed = p.kind == "categorical" or (p.kind == "numeric" and p.integer)
        if p.distinct <= 1:
            left_out[p.name] = "constant in the sample: carries no information"
        elif keyed and p.nulls == 0 and p.distinct == p.rows:
            left_out[p.name] = "unique on every row: an identifier, not a feature"
        elif p.kind == "categorical" and (
            p.distinct > MAX_CATEGORIES or p.distinct > MAX_CATEGORY_SHARE * p.rows
        ):
            left_out[p.name] = f"{p.distinct} distinct values: too many to learn from as a category"
    candidates = [c for c in frame.columns if c not in left_out and c not in inputs]
    binary = task == "binary"
    left_out |= _leaks(frame, profiles, candidates, label, target_value, binary, times)
    numeric = [c for c in candidates if c not in left_out and profiles[c].kind == "numeric"]
    left_out |= history_leaks(frame, numeric, label, Task(task), times)
    features = {
        c: profiles[c].kind
        for c in candidates
        if c not in left_out and profiles[c].kind != "timestamp"
    }
    for c in candidates:
        if c not in left_out and profiles[c].kind == "timestamp":
            left_out[c] = "a timestamp: not a model input itself"
    known = [c for c in frame.columns if c not in left_out or "identifier" in left_out[c]]
    time_columns = [column] if column else sorted(inputs)
    busiest = int(days.value_counts().max())
    ids, ids_why = draft_id_columns(frame, profiles, time_columns, known, busiest)

    extra: dict[str, Line] = {}
    taken = set(frame.columns)
    stamps = pd.to_datetime(times)
    has_clock = bool((stamps.dt.normalize() != stamps).any())
    proposals = [
        (
            "weekday",
            "dayofweek(event_time)",
            "day of the week of the event (0 = Sunday)",
            stamps.dt.dayofweek,
        ),
    ]
    if has_clock:
        hour_sql = "hour(event_time) + minute(event_time) / 60.0"
        proposals.insert(
            0, ("hour", hour_sql, "time of day of the event, in hours", stamps.dt.hour)
        )
    for base, sql, why, part in proposals:
        if (carrier := carried_by(frame, features, part)) is not None:
            features[carrier] = f"{features[carrier]}; carries the event's {base}: no {base} added"
            continue
        feature = base if base not in taken else f"event_{base}"
        while feature in taken:
            feature += "_"
        extra[feature] = Line(json.dumps(sql), why)
        features = {feature: why} | features
        taken.add(feature)
    for c in list(features):
        if c in profiles and c not in extra:
            features[c] = features[c] if ";" in features[c] else profiles[c].kind
            if profiles[c].code:
                features[c] = f"categorical: whole-number codes, {profiles[c].distinct} values"

    columns = {c: column_line(profiles[c], c == column) for c in frame.columns}
    event = {"timezone": Line(json.dumps(timezone), "zone of the partition days (--timezone)")}
    if column:
        event = {"column": Line(yaml_key(column), time_why)} | event
    else:
        event = {"expression": Line(json.dumps(expression), time_why)} | event
    start, end, bounds_why = partition_bounds(times)
    span = (stamps.max() - stamps.min()).days + 1
    per_day = len(frame) / max(span, 1)
    slices = draft_slices(list(features), profiles)
    holdout = 7
    slice_note = (
        f"the sample holds about {per_day:.0f} rows a day, a {holdout}-day holdout about "
        f"{per_day * holdout:.0f}: a slice is gated from 500 rows (see docs/contracts.md#slices)"
    )
    # Groups for the target's history: categories, and whole numbers naming things (a
    # location id) that are not parts of the date; ranked by how well each one's mean target
    # predicts it (learnt on every other row).
    groups = sorted(
        (
            c
            for c in features
            if c in profiles
            and 2 <= profiles[c].distinct <= MAX_CATEGORIES
            and not profiles[c].calendar
            and (profiles[c].kind == "categorical" or profiles[c].integer)
        ),
        key=lambda c: -(single_column_score(frame[c].astype(str), label, binary) or 0.0),
    )
    draft = Draft(
        name=name,
        sample=sample,
        rows=len(frame),
        event_time=event,
        target={
            choice.key: Line(
                yaml_key(choice.value) if choice.key == "column" else json.dumps(choice.value),
                choice.why,
            )
        },
        task=Line(task, task_why),
        label_delay=Line(
            json.dumps(label_delay or "1d"),
            "given with --label-delay"
            if label_delay
            else "how long after the event the target is known: not in a sample, one day assumed",
        ),
        start=Line(start.isoformat(), f"first day of {bounds_why}"),
        end=Line(
            end.isoformat(),
            "the day after the sample's last: rows dated later are quarantined, so move it "
            "forward (or delete it) for data after the sample",
        ),
        id_columns=Line("[" + ", ".join(yaml_key(i) for i in ids) + "]", ids_why),
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
        groups=groups,
        notes=[f"{c}: {why}" for c, why in left_out.items()],
    )
    return propose_rolling(draft)


def propose_rolling(draft: Draft) -> Draft:
    """The draft with the rolling means of the target that a quick fit on the sample keeps
    (driftloop.drafting.fits.choose_rolling), each with the measured gain."""
    import yaml
    from pydantic import ValidationError

    try:
        contract = Contract.model_validate(yaml.safe_load(render(draft)))
        raw = read_landed(draft.sample, contract).reset_index(drop=True)
        cast, violations = cast_and_check(contract, raw)
    except (ValidationError, Reject) as error:
        # The command validates the draft itself and says what is wrong with it.
        draft.rolling_summary = f"not measured: {str(error).splitlines()[0]}"
        return draft
    rows = conform(contract, cast[~violations.bad].reset_index(drop=True))
    choice = choose_rolling(contract, rows, draft.groups)
    draft.rolling_summary = choice.summary
    for rolling in choice.features:
        window = f"{rolling.window.days}d"
        value = (
            f"{{name: {rolling.name}, group_by: {yaml_key(rolling.group_by)}, window: {window}}}"
        )
        draft.rolling.append(Line(value, choice.why[rolling.name]))
        draft.features[rolling.name] = f"rolling mean of the target by {rolling.group_by}"
    return draft
