"""The data contract: a typed, validated description of one dataset, loaded from YAML."""

from __future__ import annotations

import re
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from driftloop.data.contract_sql import (
    DERIVED_EVENT_TIME,
    UnsafeSQLError,
    check_expression,
    sandboxed_connection,
)
from driftloop.data.retraining import TriggerPolicy
from driftloop.names import DAY, LABEL

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Names the lake and the features table give columns of their own (in any letter case, as
# DuckDB compares names), with why: the one list the contract, drafter and checks read.
RESERVED_COLUMN_NAMES: dict[str, str] = {
    "date": "the lake's date=YYYY-MM-DD partition folders add a column of that name",
    "_source_file": "the raw partitions' column naming the landed file of each row",
    DERIVED_EVENT_TIME: "where ingestion stores an event time computed from event_time.expression",
    "event_time": "the features table's event-time column (and the name contract SQL uses for it)",
    DAY: "the features table's partition day column",
    LABEL: "the features table's target column",
}
RESERVED_COLUMN_PREFIX = "__"  # the features query's working columns
DOCS = "docs/contracts.md"


def reserved_column_reason(name: str) -> str | None:
    """Why a column or feature may not take this name, or None when it may."""
    if name.lower().startswith(RESERVED_COLUMN_PREFIX):
        return f"names starting with {RESERVED_COLUMN_PREFIX!r} are the features query's own"
    return RESERVED_COLUMN_NAMES.get(name.lower())


class ContractError(ValueError):
    """A contract file that cannot be used, with a message that names the file and field."""


class ColumnType(StrEnum):
    numeric = "numeric"
    categorical = "categorical"
    boolean = "boolean"
    timestamp = "timestamp"


class Task(StrEnum):
    binary = "binary"
    regression = "regression"


def parse_duration(value: Any) -> timedelta:
    """'6h', '1d', '90m', a number of seconds, or a timedelta -> timedelta (never negative)."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        result = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    elif isinstance(value, str) and value.strip().startswith("-"):
        raise ValueError(f"must not be negative, got {value!r}")
    elif isinstance(value, str) and value.startswith("P"):
        # ISO 8601, as pydantic writes timedeltas in JSON: lets a contract round-trip.
        from pydantic import TypeAdapter

        result = TypeAdapter(timedelta).validate_python(value)
    else:
        raise ValueError(f"expected a duration such as '6h', '1d' or '30m', got {value!r}")
    if result < timedelta(0):
        raise ValueError(f"must not be negative, got {value!r}")
    return result


class _Strict(BaseModel):
    # Unknown keys are typos: refuse them instead of silently ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    """One column of the landed files and the rules every row of it must meet."""

    type: ColumnType
    required: bool = True
    nullable: bool = True
    max_null_fraction: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | bool] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _rules_fit_the_type(self) -> Self:
        if (self.min is not None or self.max is not None) and self.type != ColumnType.numeric:
            raise ValueError(f"min/max only apply to numeric columns, not {self.type.value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.allowed is not None and self.type not in (
            ColumnType.categorical,
            ColumnType.boolean,
        ):
            raise ValueError("allowed values only apply to categorical or boolean columns")
        return self


class EventTime(_Strict):
    """When a row happened: a timestamp column, or a SQL expression over columns."""

    column: str | None = None
    expression: str | None = None
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        derived = self.expression is not None and self.column == DERIVED_EVENT_TIME
        if (self.column is None) == (self.expression is None) and not derived:
            raise ValueError("give exactly one of 'column' or 'expression'")
        return self

    @property
    def sql(self) -> str:
        return f'"{self.column}"' if self.expression is None else f"({self.expression})"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value


class Target(_Strict):
    """What the model predicts: a column, or a SQL expression over columns."""

    column: str | None = None
    expression: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.column is None) == (self.expression is None):
            raise ValueError("give exactly one of 'column' or 'expression'")
        return self

    @property
    def sql(self) -> str:
        return f'"{self.column}"' if self.column else f"({self.expression})"


class RollingFeature(_Strict):
    """A point-in-time aggregate per group over a trailing window of values already known.

    Each row contributes `value` (SQL over its columns; default: its label) from the moment
    `known_at` (SQL timestamp; default: its event time plus the label delay, never before
    its own event time). A row at time t sees the values that became known in
    [t - window, t), so nothing from its own future, or its own outcome, leaks in.
    """

    name: str
    group_by: str
    window: timedelta
    statistic: str = Field(default="mean", pattern="^(mean|target_mean|count)$")
    value: str | None = None
    known_at: str | None = None

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> timedelta:
        return parse_duration(value)


class Partitions(_Strict):
    start: date
    end: date | None = None


class Training(_Strict):
    """Defaults for the training window; Dagster run config can override them."""

    window_days: int = Field(default=60, ge=2)
    holdout_days: int = Field(default=7, ge=1)
    validation_days: int = Field(default=7, ge=1)
    refit_on_window: bool = Field(
        default=True,
        description=(
            "serve the chosen model refitted on every labelled day of the window; the gate "
            "judges the model fitted without the validation and holdout days"
        ),
    )


class Contract(_Strict):
    name: str
    description: str = ""
    event_time: EventTime
    id_columns: list[str] = Field(default_factory=list)
    target: Target
    task: Task
    label_delay: timedelta
    partitions: Partitions
    columns: dict[str, Column]
    features: list[str]
    extra_features: dict[str, str] = Field(
        default_factory=dict, description="name -> DuckDB SQL expression over raw columns"
    )
    rolling_features: list[RollingFeature] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list)
    max_bad_row_fraction: float = Field(default=0.2, ge=0, le=1)
    training: Training = Field(default_factory=Training)
    retraining: TriggerPolicy = Field(default_factory=TriggerPolicy)

    @model_validator(mode="before")
    @classmethod
    def _derived_event_time(cls, data: Any) -> Any:
        """An event-time expression is stored by ingestion as a timestamp column of its own."""
        if not isinstance(data, dict):
            return data
        event = data.get("event_time")
        if not isinstance(event, dict) or event.get("expression") is None:
            return data
        columns = data.get("columns")
        if not isinstance(columns, dict):
            return data
        if event.get("column") not in (None, DERIVED_EVENT_TIME):
            return data  # both given: EventTime says to give exactly one
        columns = dict(columns)
        columns[DERIVED_EVENT_TIME] = {
            "type": "timestamp",
            "required": False,
            "nullable": False,
            "description": "event time computed from event_time.expression at ingestion",
        }
        return data | {"event_time": event | {"column": DERIVED_EVENT_TIME}, "columns": columns}

    @field_validator("label_delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("name")
    @classmethod
    def _name_is_an_identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower case letters, digits and '_', starting with a letter")
        return value

    @model_validator(mode="after")
    def _names_refer_to_columns(self) -> Self:
        known = set(self.columns)
        derived = set(self.extra_features) | {r.name for r in self.rolling_features}

        def need(field: str, names: list[str], allowed: set[str]) -> None:
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise ValueError(f"{field}: {unknown} not declared in 'columns'")

        need("event_time.column", [self.event_time.column], known)
        if self.columns[self.event_time.column].type != ColumnType.timestamp:
            raise ValueError("event_time.column: must be a column of type timestamp")
        need("id_columns", self.id_columns, known)
        if self.target.column is not None:
            need("target.column", [self.target.column], known)
        need("features", self.features, known | derived)
        need("slices", self.slices, known | derived)
        need("rolling_features.group_by", [r.group_by for r in self.rolling_features], known)
        for name in [*known, *derived]:
            # `_derived_event_time` declares the expression's column itself.
            derived_time = name == DERIVED_EVENT_TIME and self.event_time.expression is not None
            if not (derived_time and name in known) and (why := reserved_column_reason(name)):
                field = "columns" if name in known else "extra/rolling features"
                raise ValueError(
                    f"{field}: {name!r} is a reserved name ({why}); rename the column in the "
                    f"files or the feature (see {DOCS}#reserved-column-names)"
                )
        clash = derived & known
        if clash:
            raise ValueError(f"extra/rolling feature names {sorted(clash)} clash with columns")
        if self.target.column in self.features:
            raise ValueError(f"features: the target column {self.target.column!r} is a feature")
        return self

    # Convenience views used across the project.
    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.event_time.timezone)

    def feature_type(self, name: str) -> ColumnType:
        """Type of a model feature; extra SQL features are numeric unless declared as columns."""
        if name in self.columns:
            return self.columns[name].type
        return ColumnType.numeric

    @property
    def categorical_features(self) -> list[str]:
        return [f for f in self.features if self.feature_type(f) == ColumnType.categorical]

    @property
    def required_columns(self) -> list[str]:
        return [n for n, c in self.columns.items() if c.required]


def see(field: str) -> str:
    """Where the contract reference explains a field ('columns.x.min' -> its top section)."""
    top = field.split(".", 1)[0]
    return f"see {DOCS}#{top}" if top in Contract.model_fields else f"see {DOCS}"


def _format_pydantic_error(path: Path, error: ValidationError) -> str:
    lines = [f"contract {path}: {error.error_count()} problem(s)"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  - field '{where}': {message} ({see(where)})")
    return "\n".join(lines)


def contract_expressions(contract: Contract) -> dict[str, str]:
    """Every SQL expression of a contract, keyed by its field, as the features query uses it."""
    expressions = {"target": contract.target.sql}
    if contract.event_time.expression is not None:
        expressions["event_time.expression"] = f"CAST({contract.event_time.sql} AS TIMESTAMP)"
    expressions |= {f"extra_features.{k}": f"({v})" for k, v in contract.extra_features.items()}
    for r in contract.rolling_features:
        if r.value is not None:
            expressions[f"rolling_features.{r.name}.value"] = f"CAST(({r.value}) AS DOUBLE)"
        if r.known_at is not None:
            known_at = f"CAST(({r.known_at}) AS TIMESTAMP)"
            expressions[f"rolling_features.{r.name}.known_at"] = known_at
    return expressions


def _check_sql(path: Path, contract: Contract) -> None:
    """Each SQL expression: one scalar expression (the sandbox's rule) that compiles against
    an empty table of the declared columns, on a connection without external access."""
    import duckdb  # light import; only needed for this check

    sql_types = {
        ColumnType.numeric: "DOUBLE",
        ColumnType.categorical: "VARCHAR",
        ColumnType.boolean: "BOOLEAN",
        ColumnType.timestamp: "TIMESTAMP",
    }
    declared = [f'"{n}" {sql_types[c.type]}' for n, c in contract.columns.items()]
    columns = ", ".join([*declared, "event_time TIMESTAMP"])  # as the features query has it
    con = sandboxed_connection()
    try:
        con.execute(f"CREATE TABLE t ({columns})")
        for field, sql in contract_expressions(contract).items():
            where = f"contract {path}: field '{field}'"
            try:
                used = check_expression(sql)
            except UnsafeSQLError as error:
                raise ContractError(
                    f"{where}: {error} (see {DOCS}#what-contract-sql-may-do)"
                ) from None
            if field == "event_time.expression" and used & {DERIVED_EVENT_TIME, "event_time"}:
                raise ContractError(f"{where}: must be computed from the landed columns")
            try:
                con.execute(f"SELECT {sql} FROM t")
            except duckdb.Error as error:
                first_line = str(error).splitlines()[0]
                raise ContractError(
                    f"{where}: SQL {sql!r} does not run against the declared columns: "
                    f"{first_line} ({see(field)})"
                ) from error
    finally:
        con.close()


def load_contract(path: str | Path) -> Contract:
    """Read and validate one contract file; every problem names the file and the field."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise ContractError(f"contract {path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ContractError(f"contract {path}: expected a mapping at the top level")
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as error:
        raise ContractError(_format_pydantic_error(path, error)) from None
    _check_sql(path, contract)
    return contract


def load_contracts(directory: str | Path) -> dict[str, Contract]:
    """All contracts in a folder (*.yaml / *.yml), keyed by dataset name."""
    contracts: dict[str, Contract] = {}
    for path in sorted(Path(directory).glob("*.y*ml")):
        contract = load_contract(path)
        if contract.name in contracts:
            raise ContractError(f"contract {path}: dataset name {contract.name!r} is used twice")
        contracts[contract.name] = contract
    return contracts
