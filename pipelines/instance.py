"""The project's own Dagster instance: a DAGSTER_HOME under the data root, set up once."""

from __future__ import annotations

import os
from pathlib import Path

from driftloop.paths import data_root

# Two cores: at most two runs at once, and never two trainings of one dataset together.
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 2
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
