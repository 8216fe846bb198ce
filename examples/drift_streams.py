"""Synthetic concept-drift streams for developing the retraining policy beyond two datasets.

    uv run python examples/drift_streams.py --out DIR [--days 365] [--rows 600] [--seed 7]

Writes, for each stream, a landing file ``DIR/<name>.parquet`` and a contract
``DIR/<name>.yaml``; run any of them through the same contract-and-files path as a real
dataset, e.g.

    uv run python -m pipelines.backtest --dataset drift_abrupt \\
        --contract DIR/drift_abrupt.yaml --source DIR/drift_abrupt.parquet

Every stream is binary classification over the same inputs (six numeric columns and a
categorical ``segment``); the label is drawn from a logistic concept (a linear part, an
interaction and per-segment offsets) whose coefficients follow a drift schedule:

- ``drift_abrupt``: the concept switches to a new one on two days;
- ``drift_gradual``: two concepts, the new one drawn for a share of rows rising from 0 to 1
  over 60 days (twice);
- ``drift_incremental``: the coefficients rotate a little every day, all year;
- ``drift_recurring``: two concepts alternating every 90 days (a season);
- ``drift_stationary``: one concept all year (the control: retraining buys nothing).

The inputs' distribution moves a little with the concept in the drifting streams (a
shift of the mean of two columns), as real drift rarely leaves the inputs untouched; the
stationary control keeps both fixed. Numpy generators only, seeded: the same arguments
write the same bytes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC = [f"x{i}" for i in range(6)]
SEGMENTS = ["a", "b", "c", "d", "e"]
START = date(2021, 1, 1)
STREAMS = ("abrupt", "gradual", "incremental", "recurring", "stationary")


@dataclass(frozen=True)
class Concept:
    """The logistic concept: logit = sharpness * (w.x + v * x0 * x1 + segment offset)."""

    w: np.ndarray
    interaction: float
    offsets: np.ndarray
    shift: np.ndarray  # mean of the inputs while this concept holds

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Concept:
        w = rng.normal(0, 1, len(NUMERIC))
        w /= np.linalg.norm(w)
        return cls(
            w=w,
            interaction=float(rng.choice([-0.6, 0.6])),
            offsets=rng.normal(0, 0.5, len(SEGMENTS)),
            shift=np.concatenate([rng.normal(0, 0.3, 2), np.zeros(len(NUMERIC) - 2)]),
        )

    def blend(self, other: Concept, share: float) -> Concept:
        """The concept a share of the way to ``other`` (incremental drift)."""
        w = (1 - share) * self.w + share * other.w
        return Concept(
            w=w / np.linalg.norm(w),
            interaction=(1 - share) * self.interaction + share * other.interaction,
            offsets=(1 - share) * self.offsets + share * other.offsets,
            shift=(1 - share) * self.shift + share * other.shift,
        )


def _day_rows(
    rng: np.random.Generator, concepts: list[Concept], weights: np.ndarray, rows: int
) -> dict[str, np.ndarray]:
    """One day's rows: each row drawn from one concept (chosen by ``weights``)."""
    which = rng.choice(len(concepts), size=rows, p=weights)
    shift = np.stack([concepts[k].shift for k in which])
    x = rng.normal(0, 1, (rows, len(NUMERIC))) + shift
    segment = rng.integers(0, len(SEGMENTS), rows)
    logit = np.empty(rows)
    for k, concept in enumerate(concepts):
        mine = which == k
        xs = x[mine]
        logit[mine] = (
            xs @ concept.w
            + concept.interaction * xs[:, 0] * xs[:, 1]
            + concept.offsets[segment[mine]]
        )
    label = rng.uniform(0, 1, rows) < 1 / (1 + np.exp(-2.5 * logit))
    return {"x": x, "segment": segment, "label": label}


def _schedule(kind: str, rng: np.random.Generator, days: int) -> Callable[[int], tuple]:
    """day index -> (concepts, weights) for the stream ``kind``."""
    a, b, c = Concept.draw(rng), Concept.draw(rng), Concept.draw(rng)
    one = np.array([1.0])
    if kind == "stationary":
        still = Concept(a.w, a.interaction, a.offsets, np.zeros(len(NUMERIC)))
        return lambda day: ([still], one)
    if kind == "abrupt":
        first, second = days // 3, 2 * days // 3
        return lambda day: ([a if day < first else b if day < second else c], one)
    if kind == "gradual":
        # Transitions a -> b and b -> c, each 60 days long, starting at a third and two thirds.
        def gradual(day: int) -> tuple:
            for begin, old, new in ((days // 3, a, b), (2 * days // 3, b, c)):
                if begin <= day < begin + 60:
                    share = (day - begin + 1) / 61
                    return [old, new], np.array([1 - share, share])
            return ([a] if day < days // 3 else [b] if day < 2 * days // 3 else [c]), one

        return gradual
    if kind == "incremental":
        # A full pass a -> b -> c over the stream, a little every day.
        def incremental(day: int) -> tuple:
            t = 2 * day / max(days - 1, 1)
            return ([a.blend(b, t)] if t <= 1 else [b.blend(c, t - 1)]), one

        return incremental
    if kind == "recurring":
        return lambda day: ([a if (day // 90) % 2 == 0 else b], one)
    raise ValueError(f"unknown stream {kind!r}; known: {', '.join(STREAMS)}")


def stream(kind: str, days: int = 365, rows: int = 600, seed: int = 7) -> pd.DataFrame:
    """The stream ``kind`` as raw rows (one file's worth), ``rows`` a day from 2021-01-01."""
    rng = np.random.default_rng([seed, STREAMS.index(kind)])
    schedule = _schedule(kind, rng, days)
    frames = []
    for day in range(days):
        concepts, weights = schedule(day)
        # Rows per day vary a little, as real traffic does.
        count = int(rng.integers(int(rows * 0.8), int(rows * 1.2) + 1))
        drawn = _day_rows(rng, concepts, weights, count)
        seconds = np.sort(rng.uniform(0, 86_400, count))
        stamp = pd.Timestamp(START + timedelta(days=day)) + pd.to_timedelta(seconds, unit="s")
        frame = pd.DataFrame(drawn["x"].round(4), columns=NUMERIC)
        frame.insert(0, "ts", stamp.floor("s"))
        frame.insert(0, "row_id", [f"{day}-{i}" for i in range(count)])
        frame["segment"] = np.array(SEGMENTS)[drawn["segment"]]
        frame["y"] = drawn["label"].astype("int64")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def contract_text(name: str, kind: str, days: int) -> str:
    end = START + timedelta(days=days)
    numeric = "".join(f"  {c}: {{type: numeric}}\n" for c in NUMERIC)
    return (
        f"# Synthetic {kind} concept drift (examples/drift_streams.py): binary, {days} days.\n"
        f"name: {name}\n"
        f"description: synthetic stream with {kind} concept drift\n"
        "event_time: {column: ts, timezone: UTC}\n"
        "id_columns: [row_id]\n"
        "target: {column: y}\n"
        "task: binary\n"
        "label_delay: 1d\n"
        f"partitions: {{start: {START.isoformat()}, end: {end.isoformat()}}}\n"
        "columns:\n"
        "  row_id: {type: categorical, nullable: false}\n"
        "  ts: {type: timestamp, nullable: false}\n"
        f"{numeric}"
        f"  segment: {{type: categorical, allowed: [{', '.join(SEGMENTS)}]}}\n"
        "  y: {type: numeric, nullable: false, min: 0, max: 1}\n"
        f"features: [{', '.join([*NUMERIC, 'segment'])}]\n"
    )


def write_streams(
    out: Path, days: int = 365, rows: int = 600, seed: int = 7, kinds=STREAMS
) -> list[tuple[Path, Path]]:
    """Write ``out/drift_<kind>.parquet`` and ``out/drift_<kind>.yaml`` per stream."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        name = f"drift_{kind}"
        data, contract = out / f"{name}.parquet", out / f"{name}.yaml"
        stream(kind, days, rows, seed).to_parquet(data, index=False)
        contract.write_text(contract_text(name, kind, days))
        written.append((data, contract))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for files + contracts")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rows", type=int, default=600, help="rows a day (+-20%%)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stream", action="append", choices=STREAMS, help="default: all")
    args = parser.parse_args(argv)
    for data, contract in write_streams(
        args.out, args.days, args.rows, args.seed, tuple(args.stream or STREAMS)
    ):
        print(f"{data} ({contract.name})")


if __name__ == "__main__":
    main()
