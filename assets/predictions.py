"""`<dataset>/predictions`: batch scoring of each features partition by the champion.

Each day's rows are scored by the version the `champion` alias points at when the run
starts: resolved once per run (`resolve_champion`, which the drift and performance assets
of the same run call too and get the same version), loaded once, addressed by version so an
alias move during the run cannot mix two models in one range. While a `challenger` other
than the champion exists it scores the same rows beside it (shadow scoring):
`shadow_prediction` and `shadow_model_version`, never served, compared later.

No champion yet (a fresh install before the first promotion) is not an error: the asset
logs "waiting: no champion for <dataset> yet" and yields nothing (`output_required=False`),
so no materialization is recorded and the downstream assets of the same run are skipped.

Per-day metadata on a range run: `context.add_asset_metadata(..., partition_key=day)` puts
each day's numbers on that day's materialization (a single `MaterializeResult` alone would
stamp the range's totals on every day); a one-day run has them in its `MaterializeResult`.

The scoring is `driftloop.serving.scored_range.score_range`. The hot path stays in Arrow:
each day is read, batch by batch with reading and writing beside the scoring
(driftloop/serving/batch.py), with only the columns the predictions
table and the contract's features need (categorical ones dictionary-encoded; the models
load meanwhile, in threads of their own), our models build their
matrix from the Arrow columns directly (no pandas, no MLflow per-row input checks; see
`driftloop.serving.scoring_model.ScoringModel`), and the id columns go back to Parquet as they
came. Where the time went is in the run's metadata (`*_seconds`).
"""

# No `from __future__ import annotations`: Dagster reads the context/resource annotations.
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    Definitions,
    Failure,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from assets.automation import keep_current, store_retry_policy
from assets.cost import measured_step
from assets.partitions import daily_partitions, range_policy
from driftloop.data.contract import Contract
from driftloop.names import CHALLENGER, CHAMPION, FEATURES_TABLE
from driftloop.serving.batch import ScoredDay, Scorer
from driftloop.serving.scored_range import MissingFeatures, ScoredRange, rate, score_range
from driftloop.serving.scoring_model import ScoringModel
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

# Direct invocation (`build_asset_context`) gives every context this run id: nothing is
# shared between such calls.
DIRECT_RUN_ID = "EPHEMERAL"


@dataclass
class Champion:
    """The champion version of a run and its model, loaded on first use (or in the
    background, `load_in`) only."""

    name: str
    version: Any  # mlflow ModelVersion
    mlflow: MlflowResource
    _loading: "Future[ScoringModel] | None" = None
    load_seconds: float = 0.0
    root: "Path | None" = None  # the data root, where the compiled trees are cached

    @property
    def number(self) -> str:
        return str(self.version.version)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.version.tags or {})

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.number}"

    def load_in(self, pool: Executor) -> None:
        """Start loading the model in `pool` (the caller reads data meanwhile)."""
        if self._loading is None:
            self._loading = pool.submit(self._load)

    def _load(self) -> ScoringModel:
        started = time.perf_counter()
        model = ScoringModel.load(
            self.model_uri, self.mlflow.uri(), self.number, str(self.version.run_id), self.root
        )
        self.load_seconds = time.perf_counter() - started
        return model

    @property
    def scorer(self) -> ScoringModel:
        """The loaded version; waits for a load started by `load_in`."""
        if self._loading is None:
            future: Future[ScoringModel] = Future()
            future.set_result(self._load())
            self._loading = future
        return self._loading.result()

    def score(self, frame, threads: int = 0) -> "np.ndarray":
        return self.scorer.predict(frame, threads)


# The champion of the run in progress, by (run id, dataset, tracking URI): the assets of one
# run (predictions, drift, performance) judge the same version even if the alias moves.
_RUN_CHAMPION: dict[tuple[str, str, str], Champion] = {}


def resolve_champion(
    context: AssetExecutionContext, name: str, mlflow: MlflowResource
) -> Champion | None:
    """The run's champion (resolved on the run's first call), or None after logging that the
    asset waits for one."""
    key = (context.run_id, name, mlflow.uri())
    if key in _RUN_CHAMPION:
        return _RUN_CHAMPION[key]
    version = mlflow.version_for_alias(name, CHAMPION)
    if version is None:
        context.log.info(
            f"waiting: no champion for {name} yet (no '{CHAMPION}' alias on the registered "
            f"model {name!r} in {mlflow.uri()}); nothing is materialized"
        )
        return None
    champion = Champion(name, version, mlflow)
    if context.run_id != DIRECT_RUN_ID:
        _RUN_CHAMPION.clear()  # one run at a time per process: keep only its champion
        _RUN_CHAMPION[key] = champion
    return champion


def skip_outputs(context: AssetExecutionContext) -> Iterator[Output]:
    """Check outputs are required even when the asset output is not: give them None, which
    records no evaluation, so a skipped asset fails nothing."""
    selected = context.selected_asset_check_keys
    for output_name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in selected:
            yield Output(None, output_name=output_name)


def build_predictions(contract: Contract) -> Definitions:
    name = contract.name
    features = AssetDep(AssetKey([name, "features"]), partition_mapping=IdentityPartitionMapping())
    predictions = asset(
        key=AssetKey([name, "predictions"]),
        group_name=name,
        partitions_def=daily_partitions(contract),
        deps=[features],
        backfill_policy=range_policy(),  # one run loads the model once per range
        output_required=False,
        automation_condition=keep_current(),
        retry_policy=store_retry_policy(),
        description=(
            f"{name}: every features row scored by the champion (model_version records "
            "which version), with the challenger's shadow scores beside it while one "
            "exists. Skipped, not failed, until a champion exists."
        ),
        kinds={"mlflow", "parquet"},
    )(measured_step(name, "predictions")(_make_compute(contract)))
    return Definitions(assets=[predictions])


build = build_predictions


def _make_compute(contract: Contract) -> Callable[..., Iterator[Any]]:
    name = contract.name

    def predictions(
        context: AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> Iterator[Any]:
        paths = lake.paths(name)
        days = sorted(context.partition_keys)
        started = time.perf_counter()
        champion = resolve_champion(context, name, mlflow)
        if champion is None:
            return
        champion.root = paths.root
        # The models load in threads of their own, the champion's while the challenger is
        # looked up, and both while the first batches are read (the columns to read come
        # from the contract, not from the models).
        loader = ThreadPoolExecutor(2, "load-model")
        champion.load_in(loader)
        resolved = time.perf_counter()
        shadow = None
        challenger = mlflow.version_for_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) != champion.number:
            shadow = Champion(name, challenger, mlflow, root=paths.root)
            shadow.load_in(loader)
        lookup_seconds = time.perf_counter() - resolved
        loader.shutdown(wait=False)  # its threads end with the loads

        def each_day(day: str, scored: ScoredDay) -> None:
            if len(days) > 1:
                day_metadata = _day_metadata(scored, shadow is not None)
                context.add_asset_metadata(day_metadata, partition_key=day)
            context.log.info(
                f"{name} {day}: scored {scored.rows} rows with v{champion.number}"
                + (f" (shadow v{shadow.number})" if shadow else "")
            )

        try:
            scored = score_range(
                contract,
                paths,
                days,
                Scorer(champion.score, champion.number),
                Scorer(shadow.score, shadow.number) if shadow else None,
                on_day=each_day,
            )
        except MissingFeatures as missing:
            raise Failure(
                description=str(missing),
                metadata={"features": MetadataValue.path(str(paths.table(FEATURES_TABLE)))},
            ) from missing
        # Resolving the champion, then its load beside the challenger's lookup and load.
        shadow_seconds = lookup_seconds + shadow.load_seconds if shadow else 0.0
        model_seconds = resolved - started + max(champion.load_seconds, shadow_seconds)
        yield MaterializeResult(metadata=_run_metadata(champion, scored, model_seconds))

    return predictions


def _day_metadata(scored: ScoredDay, shadowed: bool) -> dict[str, Any]:
    """One day's numbers, for that day's materialization."""
    metadata: dict[str, Any] = {
        "dagster/row_count": scored.rows,
        "rows": scored.rows,
        "mean_prediction": scored.mean(scored.prediction_sum),
        "rows_per_second": rate(scored.rows, scored.seconds),
        "path": MetadataValue.path(str(scored.path)),
    }
    if shadowed:
        metadata["mean_shadow_prediction"] = scored.mean(scored.shadow_prediction_sum)
        metadata["mean_abs_shadow_difference"] = scored.mean(scored.shadow_abs_difference_sum)
    return metadata


def _run_metadata(champion: Champion, scored: ScoredRange, model_seconds: float) -> dict:
    """The run's numbers (and, for a one-day run, the day's)."""
    metadata: dict[str, Any] = {
        "model_version": champion.number,
        "model_uri": champion.model_uri,
        "shadow_model_version": scored.shadow_version or "",
        "days": len(scored.days),
        "rows_by_partition": MetadataValue.json({d: s.rows for d, s in scored.days.items()}),
        "total_rows": scored.rows,
        "rows_per_second_overall": scored.rows_per_second,
        # Where the step's time went: resolving the versions and loading the model(s)
        # (once per run; the loading overlaps the first reads), then per day reading the
        # features, scoring (the models' matrices and trees, summed over the scoring
        # workers) and writing the predictions. Reading and writing run beside the scoring
        # (driftloop/serving/batch.py), so the parts overlap.
        "model_seconds": round(model_seconds, 4),
        "read_seconds": round(scored.total("read_seconds"), 4),
        "score_seconds": round(scored.total("score_seconds"), 4),
        "write_seconds": round(scored.total("write_seconds"), 4),
    }
    if len(scored.days) == 1:
        [day] = scored.days.values()
        metadata.update(_day_metadata(day, scored.shadow_version is not None))
    return metadata
