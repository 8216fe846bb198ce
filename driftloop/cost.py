"""What a step costs: CPU seconds, wall seconds, peak memory and rows, measured around it.

Peak memory is the step's own high-water mark where Linux lets a process reset it
(writing "5" to /proc/self/clear_refs resets VmHWM); elsewhere it is the process's peak
so far (``getrusage``), and ``peak_memory_scope`` says which. CPU counts every thread of
the process plus any child process it waited for.

Costs are also appended to ``<data root>/cost/<dataset>/`` (one small JSON file per step,
written atomically), so the status CLI can sum scoring per model version without Dagster.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftloop.data.lake import write_text_atomic

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass
class StepCost:
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    peak_memory_scope: str = "process"  # "step" where the high-water mark was reset
    rows: int | None = None

    def metadata(self) -> dict[str, float | int | str]:
        """Dagster metadata / MLflow metric names and values."""
        out: dict[str, float | int | str] = {
            "cost_cpu_seconds": round(self.cpu_seconds, 4),
            "cost_wall_seconds": round(self.wall_seconds, 4),
            "cost_peak_memory_mb": round(self.peak_memory_mb, 1),
            "cost_peak_memory_scope": self.peak_memory_scope,
        }
        if self.rows is not None:
            out["cost_rows"] = int(self.rows)
            if self.rows > 0:
                out["cost_cpu_seconds_per_million_rows"] = round(
                    self.cpu_seconds / self.rows * 1e6, 4
                )
        return out


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reset_peak_memory() -> bool:
    """Reset the process's memory high-water mark (Linux); False where the OS cannot."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    """VmHWM (Linux) in MB, else the peak resident size getrusage reports."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class CostMeter:
    """A running measurement; ``now()`` is the cost so far (the meter keeps running)."""

    cpu_start: float = field(default_factory=_cpu)
    wall_start: float = field(default_factory=time.perf_counter)
    scope: str = "process"
    rows: int | None = None

    def now(self) -> StepCost:
        return StepCost(
            cpu_seconds=_cpu() - self.cpu_start,
            wall_seconds=time.perf_counter() - self.wall_start,
            peak_memory_mb=peak_memory_mb(),
            peak_memory_scope=self.scope,
            rows=self.rows,
        )


@contextmanager
def measure() -> Iterator[CostMeter]:
    """Measure the block: ``with measure() as meter: ...; meter.now()``."""
    scope = "step" if reset_peak_memory() else "process"
    yield CostMeter(scope=scope)


# Metadata keys that count the rows a step processed, most specific first.
ROW_KEYS = ("total_rows", "dagster/row_count", "rows", "rows_total", "rows_processed")


def rows_in(metadata: dict[str, Any]) -> int | None:
    """The row count a step reported in its metadata (plain numbers or Dagster values)."""
    for key in ROW_KEYS:
        value = metadata.get(key)
        value = getattr(value, "value", value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def cost_folder(root: Path, dataset: str) -> Path:
    return root / "cost" / dataset


def record(root: Path, dataset: str, step: str, cost: StepCost, **facts: Any) -> Path:
    """Append one step's cost (and facts such as run_id, model_version) as its own file."""
    now = datetime.now(UTC)
    body = {"step": step, "at": now.isoformat(), **asdict(cost), **facts}
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    return write_text_atomic(json.dumps(body, default=str), cost_folder(root, dataset) / name)


def read(root: Path, dataset: str) -> list[dict[str, Any]]:
    """Every recorded step cost of a dataset, oldest first."""
    folder = cost_folder(root, dataset)
    if not folder.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def scoring_per_model(records: list[dict[str, Any]], step: str = "predictions") -> list[dict]:
    """Scoring cost per model version: CPU and wall seconds per million rows."""
    totals: dict[str, dict[str, float]] = {}
    for r in records:
        if r.get("step") != step or not r.get("rows") or not r.get("model_version"):
            continue
        t = totals.setdefault(str(r["model_version"]), {"rows": 0, "cpu": 0.0, "wall": 0.0})
        t["rows"] += r["rows"]
        t["cpu"] += r["cpu_seconds"]
        t["wall"] += r["wall_seconds"]
    return [
        {
            "model_version": version,
            "rows": int(t["rows"]),
            "cpu_seconds_per_million_rows": t["cpu"] / t["rows"] * 1e6,
            "wall_seconds_per_million_rows": t["wall"] / t["rows"] * 1e6,
        }
        for version, t in sorted(
            totals.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0
        )
    ]


def last_retrain(records: list[dict[str, Any]], step: str = "model") -> dict[str, Any] | None:
    """The steps of the run that trained last (model, eval report, promotion), summed."""
    trained = [r for r in records if r.get("step") == step]
    if not trained:
        return None
    run_id = trained[-1].get("run_id")
    steps = [r for r in records if r.get("run_id") == run_id]
    return {
        "run_id": run_id,
        "at": trained[-1].get("at"),
        "mlflow_run_id": trained[-1].get("mlflow_run_id"),
        "steps": [r["step"] for r in steps],
        "cpu_seconds": sum(r["cpu_seconds"] for r in steps),
        "wall_seconds": sum(r["wall_seconds"] for r in steps),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in steps),
        "training_rows": trained[-1].get("rows"),
    }


def status(root: Path, dataset: str) -> dict[str, Any]:
    records = read(root, dataset)
    return {"last_retrain": last_retrain(records), "scoring": scoring_per_model(records)}


def format_status(data: dict[str, Any]) -> str:
    lines = []
    retrain = data.get("last_retrain")
    if retrain:
        lines.append(
            f"last retrain (run {str(retrain['run_id'])[:8]}, {', '.join(retrain['steps'])}): "
            f"{retrain['cpu_seconds']:.1f} CPU s, {retrain['wall_seconds']:.1f} wall s, "
            f"peak {retrain['peak_memory_mb']:.0f} MB, {retrain['training_rows'] or '-'} rows"
        )
    else:
        lines.append("last retrain: (none recorded)")
    for row in data.get("scoring") or []:
        lines.append(
            f"scoring v{row['model_version']}: {row['cpu_seconds_per_million_rows']:.1f} CPU s "
            f"and {row['wall_seconds_per_million_rows']:.1f} wall s per million rows "
            f"({row['rows']:,} rows)"
        )
    if not data.get("scoring"):
        lines.append("scoring: (none recorded)")
    return "\n".join(lines)
