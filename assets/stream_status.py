"""<dataset>/stream_status: the streaming consumers as the broker sees them.

Materialized on demand (the UI's Materialize, or `dg launch --assets flights/stream_status`):
reads the dataset's Redis streams (`driftloop.serving.stream.stream_status`; the URL from
DRIFTLOOP_REDIS_URL) and records the group's lag and pending entries, its consumers, the
lengths of the input, output and dead-letter streams and the predictions per second over
the last seconds as the materialization's metadata, so the asset's page plots them over
time. The consumers' own Prometheus metrics (`pipelines.stream --metrics-port`) say the same
per consumer.
"""

from __future__ import annotations

from dagster import AssetKey, Definitions, MaterializeResult, asset

from driftloop.data.contract import Contract


def build_stream_status(contract: Contract) -> Definitions:
    name = contract.name

    @asset(
        key=AssetKey([name, "stream_status"]),
        group_name=name,
        description=(
            f"{name}: the streaming consumers' lag, pending entries, throughput and dead "
            "letters, read from the Redis streams (pipelines.stream)."
        ),
        kinds={"redis"},
    )
    def stream_status() -> MaterializeResult:
        import redis

        from driftloop.serving.stream import redis_url
        from driftloop.serving.stream import stream_status as read_status

        url = redis_url()
        status = read_status(redis.Redis.from_url(url, socket_timeout=10), name)
        age = status.last_prediction_age_seconds
        return MaterializeResult(
            metadata={
                "lag": status.lag,
                "pending": status.pending,
                "consumers": status.consumers,
                "events": status.events,
                "predictions": status.predictions,
                "dead_letters": status.dead_letters,
                "predictions_per_second": status.recent_per_second,
                "last_prediction_age_seconds": -1.0 if age is None else age,
                "redis": url.split("@")[-1],  # no password in the metadata
            }
        )

    return Definitions(assets=[stream_status])
