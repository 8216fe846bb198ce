"""`python -m pipelines.dev`: `dagster dev -w workspace.yaml` on the project's persistent instance.

Sets DAGSTER_HOME to <data root>/dagster_home (unless already set) so run history and
sensor cursors survive a restart, then hands over to `dagster dev`. Extra arguments are
passed through (for example `--port 3001`).
"""

from __future__ import annotations

import os
import sys

from driftloop.paths import PROJECT_ROOT
from pipelines.instance import project_dagster_home


def main(argv: list[str] | None = None) -> None:
    home = project_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    print(f"driftloop: Dagster instance at {home}", flush=True)
    args = ["dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *(argv or sys.argv[1:])]
    os.chdir(PROJECT_ROOT)
    os.execvp(args[0], args)


if __name__ == "__main__":
    main()
