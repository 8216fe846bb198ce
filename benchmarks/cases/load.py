"""load: `import pipelines.definitions` vs `import dagster`, each in a fresh process.

Both sides are a new interpreter (`python -c "import X"`) from the project folder, so
each pays the interpreter start and every import from cold module caches of its own;
sides alternate (dagster, definitions, dagster, ...) and the figures are medians of the
wall times. Loading the code location also loads the contracts and builds every asset,
check, job, sensor and schedule definition: that is what the dagster CLI, the webserver,
the daemon and every run process pay before doing anything.
"""

from __future__ import annotations

import sys

from benchmarks import median, row, run_child

TARGET_RATIO = 1.5
STATEMENTS = {"dagster": "import dagster", "definitions": "import pipelines.definitions"}


def measure(statement: str) -> tuple[float, float]:
    run = run_child([sys.executable, "-c", statement])
    if run.returncode != 0:
        raise RuntimeError(f"{statement!r} failed:\n{run.log[-3000:]}")
    return run.seconds, run.peak_memory_mb


def run(quick: bool) -> list[dict]:
    reps = 3 if quick else 5
    measure(STATEMENTS["definitions"])  # warm the OS file cache; not counted
    times: dict[str, list[float]] = {k: [] for k in STATEMENTS}
    peaks: dict[str, list[float]] = {k: [] for k in STATEMENTS}
    for _ in range(reps):
        for side, statement in STATEMENTS.items():
            seconds, peak = measure(statement)
            times[side].append(seconds)
            peaks[side].append(peak)
    ours, theirs = median(times["definitions"]), median(times["dagster"])
    ratio = ours / theirs
    met = ratio <= TARGET_RATIO
    note = (
        f"median of {reps} alternating fresh processes each: definitions "
        f"{', '.join(f'{t:.2f}' for t in times['definitions'])} s; dagster "
        f"{', '.join(f'{t:.2f}' for t in times['dagster'])} s. Peak RSS "
        f"{median(peaks['definitions']):.0f} MB vs {median(peaks['dagster']):.0f} MB."
    )
    if not met:
        note += (
            " Missed: the code location still imports heavy libraries at load time; "
            "python -X importtime -c 'import pipelines.definitions' shows which."
        )
    return [
        row(
            case="load",
            figure=round(ours, 3),
            unit="s",
            baseline=round(theirs, 3),
            ratio=round(ratio, 3),
            peak_memory_mb=round(median(peaks["definitions"]), 1),
            size="1 contract (flights)",
            target="<= 1.5x import dagster",
            met=met,
            note=note,
        )
    ]
