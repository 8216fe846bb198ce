"""A drafted contract as commented YAML, and the sample checked against it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.reading import Reject, read_landed
from driftloop.data.rules import cast_and_check
from driftloop.drafting.profiling import yaml_key
from driftloop.drafting.record import Draft

if TYPE_CHECKING:
    from driftloop.data.contract import Contract


def _pad(text: str, why: str, width: int = 40) -> str:
    return f"{text.ljust(width)} # {why}" if why else text


def render(draft: Draft) -> str:
    """The draft as contract YAML, a comment on every inferred value."""
    out = [
        f"# Drafted by `python -m pipelines.new_dataset {draft.name}` from {draft.rows} rows of",
        f"# {draft.sample.name}. Each value says where it came from: check them, edit freely.",
        "# Reference: docs/contracts.md",
        f"name: {draft.name}",
        f"description: {json.dumps('Drafted from ' + draft.sample.name)}",
        "event_time:",
        *(_pad(f"  {k}: {v.value}", v.why) for k, v in draft.event_time.items()),
        _pad(f"id_columns: {draft.id_columns.value}", draft.id_columns.why),
        "target:",
        *(_pad(f"  {k}: {v.value}", v.why) for k, v in draft.target.items()),
        _pad(f"task: {draft.task.value}", draft.task.why),
        _pad(f"label_delay: {draft.label_delay.value}", draft.label_delay.why),
        "partitions:",
        _pad(f"  start: {draft.start.value}", draft.start.why),
        _pad(f"  end: {draft.end.value}", draft.end.why),
        _pad(f"slices: {draft.slices.value}", draft.slices.why),
        _pad("max_bad_row_fraction: 0.2", "a file with more bad rows is quarantined whole"),
        "",
        "columns:",
        *(_pad(f"  {yaml_key(c)}: {line.value}", line.why, 0) for c, line in draft.columns.items()),
        "",
        "extra_features:" + ("" if draft.extra_features else " {}"),
        *(_pad(f"  {k}: {v.value}", v.why) for k, v in draft.extra_features.items()),
        "",
        *textwrap.wrap(
            "The target's recent history by group, as known after the label delay: "
            + draft.rolling_summary,
            width=88,
            initial_indent="# ",
            subsequent_indent="# ",
        ),
        "rolling_features:" + ("" if draft.rolling else " []"),
        *(_pad(f"  - {r.value}", r.why, 0) for r in draft.rolling),
        "",
        "features:",
        *(_pad(f"  - {yaml_key(f)}", why, 30) for f, why in draft.features.items()),
        "  # Left out:",
        *(f"  # - {yaml_key(c)}: {why}" for c, why in draft.left_out.items()),
        "",
        "training:",
        *(_pad(f"  {k}: {v.value}", v.why, 24) for k, v in draft.training.items()),
    ]
    return "\n".join(out) + "\n"


def check_sample(contract: Contract, sample: Path) -> str:
    """The sample run through the drafted contract's row rules, as ingestion would."""
    try:
        raw = read_landed(sample, contract).reset_index(drop=True)
        _, violations = cast_and_check(contract, raw)
    except Reject as reject:
        return f"the sample itself would be quarantined whole: {reject.reason}"
    bad = int(violations.bad.sum())
    lines = [
        f"{len(raw) - bad} of {len(raw)} sample rows pass the row rules as ingestion applies them"
    ]
    lines += [f"  would quarantine {line}" for line in violations.lines()[:5]]
    return "\n".join(lines)
