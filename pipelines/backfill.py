"""`python -m pipelines.backfill`: ask a running Dagster webserver for an asset backfill.

The same request as the UI's "Materialize" dialog over a range of days (Dagster's GraphQL
API): the daemon splits the range into runs by the assets' backfill policy (one run, or
runs of $DRIFTLOOP_BACKFILL_DAYS_PER_RUN days: assets/partitions.py) and the run queue
starts them within the instance's limits. Example, a year of flights from landing to drift
and performance::

    python -m pipelines.backfill --dataset flights --from 2013-01-01 --to 2013-12-31 --wait
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from datetime import date, timedelta
from typing import Any

from driftloop.data.lake import contiguous_ranges
from pipelines.jobs import DAILY_ASSETS

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numCancelable }
    ... on Error { message }
  }
}"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """POST one GraphQL request to the webserver at `url`; its `data`, or an error."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise RuntimeError(f"{url}/graphql: {answer['errors'][0].get('message')}")
    return answer["data"]


def days_of(start: date, end: date) -> list[str]:
    return [(start + timedelta(n)).isoformat() for n in range((end - start).days + 1)]


def launch(url: str, dataset: str, days: list[str], assets: tuple[str, ...] = DAILY_ASSETS) -> str:
    """Launch a backfill of `assets` over exactly `days`; returns its id.

    Each asset's days are named (`partitionsByAssets`): a backfill given partition names and
    an asset selection also takes every downstream partition its days map to, and the
    features' rolling windows map a raw day to the days after it, past the end of the range
    (days whose raw data may not be there yet)."""
    ranges = [{"start": first, "end": last} for first, last in contiguous_ranges(days)]
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [dataset, name]}, "partitions": {"ranges": ranges}}
            for name in assets
        ],
        "title": f"{dataset}: {days[0]} to {days[-1]}",
    }
    result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill refused ({result['__typename']}): {result.get('message')}")
    return result["backfillId"]


def status(url: str, backfill_id: str) -> str:
    result = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if "status" not in result:
        raise RuntimeError(f"backfill {backfill_id}: {result.get('message')}")
    return result["status"]


def wait(url: str, backfill_id: str, timeout: float, every: float = 5) -> str:
    """Poll until the backfill is done (its final status) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while (current := status(url, backfill_id)) not in DONE:
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} still {current} after {timeout:.0f} s")
        time.sleep(every)
    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.backfill", description=__doc__)
    parser.add_argument("--dataset", required=True, help="dataset (contract) name")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, required=True)
    parser.add_argument("--to", dest="end", type=date.fromisoformat, required=True)
    parser.add_argument("--assets", default=",".join(DAILY_ASSETS), help="comma-separated")
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver")
    parser.add_argument("--wait", action="store_true", help="wait until it is done")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="with --wait, seconds")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error(f"--to {args.end} is before --from {args.start}")
    assets = tuple(a.strip() for a in args.assets.split(",") if a.strip())
    backfill_id = launch(args.url, args.dataset, days_of(args.start, args.end), assets)
    print(f"driftloop: backfill {backfill_id}: {args.url}/runs/b/{backfill_id}", flush=True)
    if not args.wait:
        return 0
    final = wait(args.url, backfill_id, args.timeout)
    print(f"driftloop: backfill {backfill_id} {final}")
    return 0 if final in {"COMPLETED", "COMPLETED_SUCCESS"} else 1


if __name__ == "__main__":
    sys.exit(main())
