"""What the serving commands (`pipelines.serve`, `pipelines.stream`, `pipelines.export`)
start from: a dataset's contract, data root, paths and tracking URI, and the online scorer
the endpoint and the stream share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract, load_contracts
from driftloop.paths import (
    DatasetPaths,
    contracts_dir,
    data_root,
    dataset_paths,
    default_mlflow_uri,
)

if TYPE_CHECKING:
    from driftloop.serving.canary_online import CanaryScorer


@dataclass(frozen=True)
class Installation:
    contract: Contract
    root: Path
    paths: DatasetPaths
    tracking_uri: str


def installation(
    dataset: str, data_dir: str | None = None, tracking_uri: str | None = None
) -> Installation:
    """The dataset's contract (SystemExit naming the known ones when there is none), the
    data root (`data_dir`, else DRIFTLOOP_DATA_DIR's) and the tracking URI (`tracking_uri`,
    else MLFLOW_TRACKING_URI, else the root's SQLite store)."""
    contracts = load_contracts(contracts_dir())
    if dataset not in contracts:
        raise SystemExit(
            f"no contract for dataset {dataset!r} in {contracts_dir()} "
            f"(known: {', '.join(sorted(contracts)) or 'none'})"
        )
    root = data_root(data_dir)
    uri = tracking_uri or default_mlflow_uri(root)
    return Installation(contracts[dataset], root, dataset_paths(dataset, root), uri)


def online_scorer(
    place: Installation, refresh_seconds: float, history_days: int, max_rows: int | None = None
) -> CanaryScorer:
    """The endpoint's scorer: the champion watcher, the online feature state (with the
    event log when the contract names its rows), the canary router and the request log.
    Nothing is started here."""
    from driftloop.serving.canary_log import RequestLog
    from driftloop.serving.canary_online import CanaryRouter, CanaryScorer
    from driftloop.serving.champion import ChampionWatcher
    from driftloop.serving.event_log import EventLog
    from driftloop.serving.online_state import OnlineFeatureState, log_path

    contract, paths, uri = place.contract, place.paths, place.tracking_uri
    watcher = ChampionWatcher(contract.name, uri, refresh_seconds=refresh_seconds, root=place.root)
    event_log = EventLog(log_path(paths)) if contract.id_columns else None
    state = OnlineFeatureState(contract, paths, history_days, event_log)
    # The canary (if one runs) and the request log ride along with the champion.
    router = CanaryRouter(paths, uri, refresh_seconds)
    extra = {} if max_rows is None else {"max_rows": max_rows}
    return CanaryScorer(
        contract, paths, watcher, state, router=router, request_log=RequestLog(paths), **extra
    )
