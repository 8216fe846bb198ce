"""`<dataset>/predictions`: batch scoring of each features partition by the champion.

Each day's rows are scored by the version the `champion` alias points at when the run
starts (resolved once, loaded once per run, addressed by version so an alias move during
the run cannot mix two models in one range). While a `challenger` other than the champion
exists it scores the same rows beside it (shadow scoring): `shadow_prediction` and
`shadow_model_version`, never served, compared later.

No champion yet (a fresh install before the first promotion) is not an error: the asset
logs "waiting: no champion for <dataset> yet" and yields nothing (`output_required=False`),
so no materialization is recorded and the downstream assets of the same run are skipped.

Per-day metadata on a range run: `context.add_asset_metadata(..., partition_key=day)` puts
each day's numbers on that day's materialization (a single `MaterializeResult` alone would
stamp the range's totals on every day).

The hot path stays in Arrow: each day is read, batch by batch with reading and writing
beside the scoring (driftloop/serving/batch.py), with only the columns the predictions
table and the contract's features need (categorical ones dictionary-encoded; the models
load meanwhile, in a thread of their own), our models build their
matrix from the Arrow columns directly (no pandas, no MLflow per-row input checks; see
`driftloop.training.registry.load_scoring_model`), and the id columns go back to Parquet as they
came. Where the time went is in the run's metadata (`*_seconds`).
"""

# No `from __future__ import annotations`: Dagster reads the context/resource annotations.
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    BetaWarning,
    Definitions,
    Failure,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)

from assets.partitions import daily_partitions
from driftloop.data.contract import Contract
from driftloop.monitoring.signals import ScoreFn, prediction_key_columns
from driftloop.names import CHALLENGER, CHAMPION, FEATURES_TABLE
from driftloop.serving.batch import Scorer, score_day
from resources.lake import LakeResource
from resources.mlflow import MlflowResource


@dataclass
class Champion:
    """The champion version of a run and its model, loaded on first use (or in the
    background, `load_in`) only."""

    name: str
    version: Any  # mlflow ModelVersion
    mlflow: MlflowResource
    _loading: "Future[ScoreFn] | None" = None
    load_seconds: float = 0.0

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

    def _load(self) -> ScoreFn:
        started = time.perf_counter()
        scorer = self.mlflow.load_scoring_model(self.model_uri)
        self.load_seconds = time.perf_counter() - started
        return scorer

    @property
    def scorer(self) -> ScoreFn:
        """score(frame) -> scores, with `.features` and `.string_features` (the registry's);
        waits for a load started by `load_in`."""
        if self._loading is None:
            future: Future[ScoreFn] = Future()
            future.set_result(self._load())
            self._loading = future
        return self._loading.result()

    def score(self, frame, threads: int = 0) -> "np.ndarray":
        return self.scorer(frame, threads)


def resolve_champion(
    context: AssetExecutionContext, name: str, mlflow: MlflowResource
) -> Champion | None:
    """The champion, or None after logging that the asset waits for one."""
    version = mlflow.version_for_alias(name, CHAMPION)
    if version is None:
        context.log.info(
            f"waiting: no champion for {name} yet (no '{CHAMPION}' alias on the registered "
            f"model {name!r} in {mlflow.uri()}); nothing is materialized"
        )
        return None
    return Champion(name, version, mlflow)


def skip_outputs(context: AssetExecutionContext) -> Iterator[Output]:
    """Check outputs are required even when the asset output is not: give them None, which
    records no evaluation, so a skipped asset fails nothing."""
    selected = context.selected_asset_check_keys
    for output_name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in selected:
            yield Output(None, output_name=output_name)


def build_predictions(contract: Contract) -> Definitions:
    name = contract.name
    key = AssetKey([name, "predictions"])
    features = AssetDep(AssetKey([name, "features"]), partition_mapping=IdentityPartitionMapping())
    with warnings.catch_warnings():
        # backfill_policy is "beta" in 1.13; a range is one run that loads the model once.
        warnings.simplefilter("ignore", BetaWarning)
        predictions = asset(
            key=key,
            group_name=name,
            partitions_def=daily_partitions(contract),
            deps=[features],
            backfill_policy=BackfillPolicy.single_run(),
            output_required=False,
            description=(
                f"{name}: every features row scored by the champion (model_version records "
                "which version), with the challenger's shadow scores beside it while one "
                "exists. Skipped, not failed, until a champion exists."
            ),
            kinds={"mlflow", "parquet"},
        )(_make_compute(contract))
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
        absent = [d for d in days if not paths.partition_file(FEATURES_TABLE, d).exists()]
        if absent:
            raise Failure(
                description=f"{name}: no features partition for {', '.join(absent)}; "
                f"materialize {name}/features for these days first",
                metadata={"features": MetadataValue.path(str(paths.table(FEATURES_TABLE)))},
            )
        shadow = None
        challenger = mlflow.version_for_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) != champion.number:
            shadow = Champion(name, challenger, mlflow)
        models = [m for m in (champion, shadow) if m is not None]
        resolve_seconds = time.perf_counter() - started
        # The models load in a thread of their own while the first batches are read (the
        # columns to read come from the contract, not from the models).
        loader = ThreadPoolExecutor(len(models), "load-model")
        for model in models:
            model.load_in(loader)
        loader.shutdown(wait=False)  # its thread ends with the loads
        columns, dictionary = _columns_to_read(contract)

        total_rows, total_seconds, written = 0, 0.0, {}
        read_seconds = score_seconds = write_seconds = 0.0
        for day in days:
            scored = score_day(
                contract,
                paths,
                day,
                Scorer(champion.score, champion.number),
                Scorer(shadow.score, shadow.number) if shadow else None,
                columns,
                dictionary,
            )
            read_seconds += scored.read_seconds
            score_seconds += scored.score_seconds
            write_seconds += scored.write_seconds
            total_rows += scored.rows
            total_seconds += scored.seconds
            written[day] = scored.rows
            day_meta: dict[str, Any] = {
                "dagster/row_count": scored.rows,
                "rows": scored.rows,
                "mean_prediction": scored.mean(scored.prediction_sum),
                "rows_per_second": _rate(scored.rows, scored.seconds),
                "path": MetadataValue.path(str(scored.path)),
            }
            if shadow is not None:
                day_meta["mean_shadow_prediction"] = scored.mean(scored.shadow_prediction_sum)
                day_meta["mean_abs_shadow_difference"] = scored.mean(
                    scored.shadow_abs_difference_sum
                )
            context.add_asset_metadata(day_meta, partition_key=day)
            context.log.info(
                f"{name} {day}: scored {scored.rows} rows with v{champion.number}"
                + (f" (shadow v{shadow.number})" if shadow else "")
            )

        yield MaterializeResult(
            metadata={
                "model_version": champion.number,
                "model_uri": champion.model_uri,
                "shadow_model_version": shadow.number if shadow else "",
                "days": len(days),
                "rows_by_partition": MetadataValue.json(written),
                "total_rows": total_rows,
                "rows_per_second_overall": _rate(total_rows, total_seconds),
                # Where the step's time went: resolving the versions and loading the
                # model(s) (once per run; the loading overlaps the first reads), then per day
                # reading the features, scoring (the models' matrices and trees, summed over
                # the scoring workers) and writing the predictions. Reading and writing run
                # beside the scoring (driftloop/serving/batch.py), so the parts overlap.
                "model_seconds": round(resolve_seconds + max(m.load_seconds for m in models), 4),
                "read_seconds": round(read_seconds, 4),
                "score_seconds": round(score_seconds, 4),
                "write_seconds": round(write_seconds, 4),
            }
        )

    return predictions


def _columns_to_read(contract: Contract) -> tuple[list[str], list[str]]:
    """The features columns the predictions table and the models read (the contract's
    features: our models are trained on them; a model that needs another column fails
    naming it), and the categorical ones to read dictionary-encoded."""
    keep = prediction_key_columns(contract)
    dictionary = [c for c in contract.categorical_features if c not in keep]
    return [*keep, *contract.features], dictionary


def _rate(rows: int, seconds: float) -> float:
    return float(rows / seconds) if seconds > 0 else 0.0
