"""The project's own Dagster instance: a DAGSTER_HOME under the data root, set up once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.paths import data_root

if TYPE_CHECKING:
    from dagster import DagsterInstance

# Two cores: at most two runs at once, and never two trainings of one dataset together.
# The daemon looks at the run queue every second (Dagster's default: 5 s), so a run the
# new-data sensor requests starts about 2 s sooner on average.
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 2
  dequeue_interval_seconds: 1
  tag_concurrency_limits:
    - key: driftloop/training
      value:
        applyLimitPerUniqueValue: true
      limit: 1
"""


def project_dagster_home(root: Path | None = None) -> Path:
    """$DAGSTER_HOME if set, else <data root>/dagster_home; created with our dagster.yaml."""
    raw = os.environ.get("DAGSTER_HOME")
    home = Path(raw).expanduser().resolve() if raw else (root or data_root()) / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


@contextmanager
def instance_at(home: Path) -> Iterator[DagsterInstance]:
    """The Dagster instance of the DAGSTER_HOME `home` (read from another process's home).

    DAGSTER_HOME points at `home` while it is open: the event log storage finds its files
    through it, as in every process Dagster itself starts."""
    from dagster import DagsterInstance

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
