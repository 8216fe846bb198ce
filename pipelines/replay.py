"""Replay days of the embedded flights data into the landing zone.

python -m pipelines.replay --dataset flights --start 2013-01-01 --days 3 [--format csv]
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from driftloop.data.replay import FORMATS, replay_days
from driftloop.paths import data_root, dataset_paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.replay",
        description="Write days of an embedded dataset into <data root>/landing/<dataset>/.",
    )
    parser.add_argument("--dataset", default="flights", help="only 'flights' is embedded")
    parser.add_argument("--start", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1, help="number of days (default 1)")
    parser.add_argument("--format", choices=FORMATS, default="csv", dest="fmt")
    parser.add_argument(
        "--data-dir", default=None, help="data root (default $DRIFTLOOP_DATA_DIR or ./data)"
    )
    args = parser.parse_args(argv)
    paths = dataset_paths(args.dataset, data_root(args.data_dir))
    try:
        files = replay_days(paths, args.start, args.days, args.fmt)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for item in files:
        print(f"{item.status:9} {item.path}  rows={item.rows}  day={item.day.isoformat()}")
    print(f"{len(files)} file(s), {sum(f.rows for f in files)} rows, in {paths.landing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
