"""Real-time scoring of a dataset's champion from the raw fields a client knows (no HTTP here).

Why not plain `mlflow models serve -m models:/<dataset>@champion`: MLflow's server
resolves the alias once, at start, and it expects the model's input, the precomputed
features, which a client cannot know (point-in-time aggregates such as a carrier's late
rate over the last 7 days). `OnlineScorer` takes the raw request fields
(`driftloop.serving.requests`), builds each row's features as the batch definition does
and scores them with the champion (`driftloop.serving.champion`):

- rolling features come from `OnlineFeatureState` (the lake's rows and the events, kept
  ready in memory: binary searches over prefix sums);
- the contract's row expressions (`extra_features`, timestamp features) are evaluated by
  DuckDB with the definition's own SQL, in one small query per request whatever its
  number of rows, on a connection without file or network access; a row expression is a
  function of its inputs alone, so its results are remembered per input values
  (`EXPRESSION_MEMO_ROWS` of them) and a request whose rows were all seen before runs no
  query (a query costs a millisecond or two, the rest of a one-row request less);
- plain columns are cast as the definition casts them (numbers and booleans to doubles,
  categories to strings).

So a row stored in the lake gets, online, exactly the features (and the prediction)
batch scoring gave it. Categorical values the served model never saw in training (of
columns without an `allowed` list) are scored as the model scores missing values, and
counted in the response (`unseen_categories`) instead of passing silently.

`resolve_model` is the one step that chooses the version answering a request: a canary or
a shadow split replaces it without touching the rest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from driftloop.data.contract import ColumnType, Contract
from driftloop.features.definition import SQL_TYPES, ident, plain_feature_sql
from driftloop.paths import DatasetPaths
from driftloop.serving.champion import ChampionWatcher
from driftloop.serving.online_state import OnlineFeatureState
from driftloop.serving.requests import (
    DEFAULT_MAX_ROWS,
    RequestError,
    RequestSchema,
    Rows,
    epoch_us,
    fail,
    parse_request,
    raw_record,
    sql_columns,
)
from driftloop.serving.scoring_model import ScoringModel

# What callers of this module import (the request and champion parts live beside it).
__all__ = [
    "ChampionWatcher",
    "OnlineScorer",
    "RequestError",
    "RequestSchema",
    "Scored",
    "parse_request",
    "raw_record",
]
# Contract SQL may say `event_time` for the row's event time, whatever column holds it.
EVENT_TIME_NAME = "event_time"
# Row expression results remembered, by their input values (oldest forgotten first).
EXPRESSION_MEMO_ROWS = 100_000


@dataclass
class Scored:
    """A response body and what the metrics need to know about it."""

    body: dict[str, Any]
    model: ScoringModel
    rows: int
    unseen: dict[str, int] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. a canary's arms


class OnlineScorer:
    """Raw request rows -> features (the batch definition) -> the champion's scores."""

    def __init__(
        self,
        contract: Contract,
        paths: DatasetPaths,
        watcher: ChampionWatcher,
        state: OnlineFeatureState | None = None,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        self.contract = contract
        self.paths = paths
        self.watcher = watcher
        self.state = state or OnlineFeatureState(contract, paths)
        self.schema = RequestSchema.from_contract(contract, max_rows)
        rolling = {r.name for r in contract.rolling_features}
        columns = contract.columns
        self._expressions = [
            f
            for f in contract.features
            if f not in rolling
            and (f in contract.extra_features or columns[f].type == ColumnType.timestamp)
        ]
        self._expression_inputs = self._inputs_of(self._expressions)
        inputs = ", ".join(
            f"unnest(${j + 2}::{self._sql_type(n)}[]) AS {ident(n)}"
            for j, n in enumerate(self._expression_inputs)
        )
        outputs = ", ".join(
            f"{plain_feature_sql(contract, f)} AS {ident(f)}" for f in self._expressions
        )
        self._expression_sql = (
            f"SELECT {outputs} FROM (SELECT unnest($1::BIGINT[]) AS __i"
            f"{', ' + inputs if inputs else ''}) ORDER BY __i"
        )
        # One row (the common request) binds plain values: a fifth cheaper than lists.
        scalars = ", ".join(
            [
                f"${j + 1}::{self._sql_type(n)} AS {ident(n)}"
                for j, n in enumerate(self._expression_inputs)
            ]
            or ["1 AS __one"]
        )
        self._one_row_sql = f"SELECT {outputs} FROM (SELECT {scalars})"
        # Categorical features whose values the contract does not list: the model's own
        # training categories are the only check left for them.
        self._memo: dict[tuple, tuple] = {}
        self._memo_lock = threading.Lock()  # writers (server threads, stream consumers)
        self.free_categoricals = [
            f
            for f in contract.features
            if f in columns
            and columns[f].type == ColumnType.categorical
            and columns[f].allowed is None
        ]
        self._local = threading.local()

    def _sql_type(self, name: str) -> str:
        if name == EVENT_TIME_NAME:
            return "TIMESTAMP"
        return SQL_TYPES[self.contract.columns[name].type]

    def _inputs_of(self, features: list[str]) -> list[str]:
        """The columns (and `event_time`) the row expressions of these features read."""
        needed: set[str] = set()
        for name in features:
            if name in self.contract.extra_features:
                refs = sql_columns(self.contract.extra_features[name])
                needed |= set(self.schema.required) if refs is None else refs
            else:
                needed.add(name)
        names = [n for n in self.contract.columns if n in needed]
        return names + ([EVENT_TIME_NAME] if EVENT_TIME_NAME in needed else [])

    def _input_values(self, rows: Rows, name: str) -> list[Any]:
        if name == EVENT_TIME_NAME and name not in self.contract.columns:
            return rows.columns[self.contract.event_time.column]
        return rows.columns[name]

    def _connection(self) -> Any:
        con = getattr(self._local, "con", None)
        if con is None:
            import duckdb

            # One request, one thread: a tiny query pays for every thread it wakes.
            con = duckdb.connect(config={"enable_external_access": False, "threads": 1})
            self._local.con = con
        return con

    @property
    def ready(self) -> bool:
        return self.watcher.model is not None

    def start_background(self) -> None:
        """Background work beside the champion watcher (a canary's router, see
        driftloop.serving.canary_online); none here."""

    def stop_background(self) -> None:
        """Stop what `start_background` started."""

    def resolve_model(self, request: dict[str, Any] | None = None) -> ScoringModel:
        """The version that answers this request (read once: the whole request uses it)."""
        model = self.watcher.model
        if model is None:
            fail(503, f"no '{self.watcher.alias}' model for {self.contract.name} yet")
        return model

    def features(self, rows: Rows) -> dict[str, Any]:
        """The model input of validated request rows, column by column, every contract
        feature in order: float64 arrays (NULL = NaN), categories as lists of str or None."""
        import numpy as np

        contract = self.contract
        if not self.state.loaded:  # a scorer used in process, without the app's lifespan
            self.state.refresh_lake()
        event = contract.event_time.column
        times = rows.columns[event]
        for i, stamp in enumerate(times):
            reason = self.state.servable(stamp.date().isoformat())
            if reason:
                fail(422, reason, field=event, row=i)
        self.state.catch_up()
        rolling = self.state.features(rows.columns, [epoch_us(t) for t in times])
        computed: dict[str, list] = {}
        if self._expressions:
            result = self._expression_rows(rows)
            for j, name in enumerate(self._expressions):
                computed[name] = [r[j] for r in result]
        data: dict[str, Any] = {}
        for name in contract.features:
            if name in rolling:
                values = rolling[name]
            elif name in computed:
                values = computed[name]
            elif contract.columns[name].type == ColumnType.categorical:
                data[name] = rows.columns[name]
                continue
            else:  # numbers and booleans as doubles, as the definition casts them
                values = [None if v is None else float(v) for v in rows.columns[name]]
            data[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return data

    def _expression_rows(self, rows: Rows) -> list[tuple]:
        """The row expressions' values of each row: remembered ones, the rest from one
        DuckDB query."""
        values = [self._input_values(rows, n) for n in self._expression_inputs]
        keys = list(zip(*values, strict=True)) if values else [()] * rows.count
        memo = self._memo
        result = [memo.get(k) for k in keys]
        missing = [i for i, r in enumerate(result) if r is None]
        if not missing:
            return result  # type: ignore[return-value]
        if len(missing) == 1:
            sql, params = self._one_row_sql, [v[missing[0]] for v in values]
        else:
            picked = [[v[i] for i in missing] for v in values]
            sql, params = self._expression_sql, [list(range(len(missing))), *picked]
        fetched = self._connection().execute(sql, params).fetchall()
        with self._memo_lock:
            for i, row in zip(missing, fetched, strict=True):
                result[i] = memo[keys[i]] = tuple(row)
            while len(memo) > EXPRESSION_MEMO_ROWS:  # dicts keep insertion order: oldest first
                del memo[next(iter(memo))]
        return result  # type: ignore[return-value]

    def unseen(self, model: ScoringModel, rows: Rows) -> dict[str, int]:
        """Per free categorical feature: values in the request the model was not trained on."""
        counts: dict[str, int] = {}
        for name in self.free_categoricals:
            known = model.categories.get(name)
            if known is None:
                continue
            missing = sum(1 for v in rows.columns[name] if v is not None and v not in known)
            if missing:
                counts[name] = missing
        return counts

    def predict(self, payload: Any) -> dict[str, Any]:
        """A parsed JSON body -> the response body. Raises RequestError for the client."""
        return self.score(payload).body

    def score(self, payload: Any, request: dict[str, Any] | None = None) -> Scored:
        """A parsed JSON body -> the response and what it was made with (model, rows,
        unseen values). Raises RequestError for the client."""
        model = self.resolve_model(request)
        rows = parse_request(payload, self.schema)
        features = self.features(rows)
        scores = model.predict_columns(features, rows.count)
        body = self.response_body(model, scores)
        unseen = self.unseen(model, rows)
        if unseen:
            body["unseen_categories"] = unseen
        return Scored(body, model, rows.count, unseen)

    def response_body(self, model: ScoringModel, scores: Any) -> dict[str, Any]:
        """The predictions and the version that answers for them."""
        return {
            "predictions": [float(s) for s in scores],
            "model_version": model.version,
            "model_uri": model.model_uri,
            "run_id": model.run_id,
            "dataset": self.contract.name,
        }

    def version(self) -> dict[str, Any]:
        self.state.catch_up()  # so the state described includes every accepted event
        model = self.watcher.model
        checked = self.watcher.checked_at
        return {
            "dataset": self.contract.name,
            "alias": self.watcher.alias,
            "model_version": model.version if model else None,
            "model_uri": model.model_uri if model else None,
            "run_id": model.run_id if model else None,
            "loaded_at": _iso(model.loaded_at) if model else None,
            # Whether the trees are compiled, else why LightGBM's (or MLflow's) predict.
            "compiled": model.compiled is not None if model else None,
            "compiled_reason": model.compiled_reason if model else None,
            "alias_checked_at": _iso(checked) if checked else None,
            "refresh_seconds": self.watcher.refresh_seconds,
            "last_error": self.watcher.last_error,
            "online_state": self.state.describe(),
        }


def _iso(seconds: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
