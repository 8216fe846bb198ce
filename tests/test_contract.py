"""The contract loader: valid contracts load; every typo fails with a message naming the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from driftloop.data.contract import (
    RESERVED_COLUMN_NAMES,
    ContractError,
    Task,
    load_contract,
    load_contracts,
    parse_duration,
)
from driftloop.data.contract_sql import DERIVED_EVENT_TIME, check_expression, sandboxed_connection
from driftloop.data.event_time import compute_event_time, event_time_inputs
from driftloop.paths import PROJECT_ROOT

FLIGHTS = PROJECT_ROOT / "contracts" / "flights.yaml"
TAXI = PROJECT_ROOT / "examples" / "contracts" / "taxi.yaml"


def _write_variant(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(FLIGHTS.read_text())
    edit(raw)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_contracts_load() -> None:
    flights = load_contract(FLIGHTS)
    assert flights.name == "flights"
    assert flights.task is Task.binary
    assert flights.label_delay == timedelta(days=1)
    assert flights.categorical_features == ["carrier", "origin", "dest"]
    assert "arr_delay" not in flights.features and "dep_delay" not in flights.features
    taxi = load_contract(TAXI)
    assert taxi.task is Task.regression
    assert "total_amount" not in taxi.features


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (
            lambda c: c["columns"]["distance"].update(type="numerc"),
            "columns.distance.type",
            "numeric",
        ),
        (
            lambda c: c.update(target={"column": "no_such_column"}),
            "target.column",
            "no_such_column",
        ),
        (lambda c: c.update(target={"expression": "arr_dealy > 15"}), "target", "arr_dealy"),
        (lambda c: c.update(label_delay="-1d"), "label_delay", "negative"),
        (lambda c: c.update(label_delay="soon"), "label_delay", "duration"),
        (lambda c: c.update(task="classification"), "task", "binary"),
        (lambda c: c["event_time"].update(timezone="Mars/Olympus"), "event_time.timezone", "Mars"),
        (lambda c: c["features"].append("arr_dlay"), "features", "arr_dlay"),
        (lambda c: c.update(featrues=["hour"]), "featrues", "not permitted"),
        (lambda c: c["columns"]["carrier"].update(min=0), "columns.carrier", "numeric"),
        (lambda c: c["columns"]["distance"].update(min=10, max=1), "columns.distance", "greater"),
        (lambda c: c.update(slices=["airline"]), "slices", "airline"),
        (
            lambda c: c["extra_features"].update(hour="hour(no_column)"),
            "extra_features.hour",
            "no_column",
        ),
    ],
)
def test_typos_fail_naming_the_field(tmp_path: Path, edit, field: str, words: str) -> None:
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message
    assert words in message


def test_target_column_may_not_be_a_feature(tmp_path: Path) -> None:
    def edit(c: dict) -> None:
        c["target"] = {"column": "arr_delay"}
        c["features"].append("arr_delay")

    with pytest.raises(ContractError, match="target column 'arr_delay' is a feature"):
        load_contract(_write_variant(tmp_path, edit))


@pytest.mark.parametrize("name", [*RESERVED_COLUMN_NAMES, "Date", "LABEL", "__rid"])
def test_reserved_names_are_refused_naming_the_column_and_the_rule(
    tmp_path: Path, name: str
) -> None:
    # A `date` column would load and then break the features query: the lake's date=
    # folders add a column of that name (DuckDB matches names in any letter case).
    def as_column(c: dict) -> None:
        c["columns"][name] = {"type": "numeric"}
        c["features"].append(name)

    def as_feature(c: dict) -> None:
        c["extra_features"][name] = "distance / 2"

    for edit in (as_column, as_feature):
        with pytest.raises(ContractError) as caught:
            load_contract(_write_variant(tmp_path, edit))
        message = str(caught.value)
        assert f"{name!r} is a reserved name" in message
        assert "reserved-column-names" in message
        reason = RESERVED_COLUMN_NAMES.get(name.lower(), "features query's own")
        assert reason in message


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ContractError, match="mapping"):
        load_contract(listing)


def test_duplicate_dataset_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FLIGHTS.read_text())
    (tmp_path / "b.yaml").write_text(FLIGHTS.read_text())
    with pytest.raises(ContractError, match="used twice"):
        load_contracts(tmp_path)


def test_copy_under_another_name_loads_independently(tmp_path: Path) -> None:
    (tmp_path / "flights.yaml").write_text(FLIGHTS.read_text())
    (tmp_path / "flights_copy.yaml").write_text(
        FLIGHTS.read_text().replace("name: flights", "name: flights_copy")
    )
    contracts = load_contracts(tmp_path)
    assert sorted(contracts) == ["flights", "flights_copy"]
    assert contracts["flights"].features == contracts["flights_copy"].features


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        (3600, timedelta(hours=1)),
        ("0s", timedelta(0)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_contract_round_trips_through_json() -> None:
    contract = load_contract(FLIGHTS)
    again = type(contract).model_validate_json(contract.model_dump_json())
    assert again == contract


# --- the contract SQL sandbox -------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (
            lambda c: c["extra_features"].update(
                leak="(SELECT count(*) FROM read_csv('/etc/passwd'))"
            ),
            "extra_features.leak",
        ),
        # Breaking out of the parentheses with a comment still leaves a FROM clause.
        (
            lambda c: c["extra_features"].update(leak="1) FROM read_csv('/etc/passwd') --"),
            "extra_features.leak",
        ),
        (lambda c: c.update(target={"expression": "arr_delay > 15; DROP TABLE t"}), "target"),
        (
            lambda c: c["rolling_features"][0].update(
                value="(SELECT 1 FROM glob('/etc/*') LIMIT 1)"
            ),
            "rolling_features.carrier_late_rate_7d.value",
        ),
        (
            lambda c: c["rolling_features"][5].update(
                known_at="(SELECT max(ts) FROM read_parquet('/tmp/x.parquet'))"
            ),
            "rolling_features.origin_dep_delay_2h.known_at",
        ),
    ],
)
def test_contract_sql_cannot_read_anything(tmp_path: Path, edit, field: str) -> None:
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    message = str(caught.value)
    assert f"field '{field}'" in message
    assert str(path) in message
    assert "docs/contracts.md#" in message


def test_sandboxed_connection_refuses_files() -> None:
    import duckdb

    con = sandboxed_connection()
    with pytest.raises(duckdb.Error, match="disabled"):
        con.execute("SELECT count(*) FROM read_csv('/etc/passwd')")
    assert check_expression("hour(a) + b / 60.0") == {"a", "b"}


def test_validation_errors_link_to_the_fields_section(tmp_path: Path) -> None:
    path = _write_variant(tmp_path, lambda c: c["columns"]["distance"].update(type="numerc"))
    with pytest.raises(ContractError, match=r"see docs/contracts\.md#columns"):
        load_contract(path)


# --- event time from columns --------------------------------------------------------------


def _date_plus_hour(c: dict) -> None:
    columns = c["columns"]
    del columns["scheduled_departure"]
    columns["dep_date"] = {"type": "categorical", "nullable": False}
    columns["dep_hour"] = {"type": "numeric", "nullable": False, "min": 0, "max": 23}
    c["event_time"] = {
        "expression": "CAST(dep_date AS DATE) + to_hours(CAST(dep_hour AS BIGINT))",
        "timezone": "America/New_York",
    }
    # Contract SQL says `event_time` for the row's event time, whatever it is made of.
    c["extra_features"] = {
        "hour": "hour(event_time)",
        "weekday": "dayofweek(event_time)",
        "plane_age": "year(event_time) - plane_year",
    }
    for rolling in c["rolling_features"]:
        if rolling.get("known_at"):
            rolling["known_at"] = "event_time + to_minutes(CAST(dep_delay AS BIGINT))"


def test_event_time_expression_over_columns(tmp_path: Path) -> None:
    import pandas as pd

    contract = load_contract(_write_variant(tmp_path, _date_plus_hour))
    assert contract.event_time.column == DERIVED_EVENT_TIME
    assert contract.columns[DERIVED_EVENT_TIME].type.value == "timestamp"
    assert not contract.columns[DERIVED_EVENT_TIME].required
    assert event_time_inputs(contract) == ["dep_date", "dep_hour"]
    frame = pd.DataFrame({"dep_date": ["2013-01-01", "2013-03-10", None], "dep_hour": [5.0, 23, 1]})
    times = compute_event_time(contract, frame)
    assert list(times[:2]) == [pd.Timestamp("2013-01-01 05:00"), pd.Timestamp("2013-03-10 23:00")]
    assert pd.isna(times[2])
    again = type(contract).model_validate_json(contract.model_dump_json())
    assert again == contract


def test_event_time_expression_must_use_landed_columns(tmp_path: Path) -> None:
    def edit(c: dict) -> None:
        _date_plus_hour(c)
        c["event_time"]["expression"] = "event_time + INTERVAL 1 HOUR"

    with pytest.raises(ContractError, match=r"event_time\.expression"):
        load_contract(_write_variant(tmp_path, edit))

    def both(c: dict) -> None:
        _date_plus_hour(c)
        c["event_time"]["column"] = "dep_date"

    with pytest.raises(ContractError, match="exactly one"):
        load_contract(_write_variant(tmp_path, both))


# --- the contract reference -------------------------------------------------------------


def _model_fields(model: type, prefix: str = "") -> dict[str, type | None]:
    """Every field of the contract model, nested models included: dotted path -> sub-model."""
    import typing

    from pydantic import BaseModel

    out: dict[str, type | None] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        candidates = [info.annotation, *typing.get_args(info.annotation)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        nested += [
            a
            for c in candidates
            for a in typing.get_args(c)
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        out[path] = nested[0] if nested else None
        if nested:
            out |= _model_fields(nested[0], f"{path}.")
    return out


def _section(page: str, sections: dict[str, int], title: str) -> str:
    start = sections.get(title)
    if start is None:
        return ""
    ends = [s for s in sections.values() if s > start]
    return page[start : min(ends, default=len(page))]


def test_every_contract_field_is_in_the_reference() -> None:
    """docs/contracts.md has a section per top-level field and names every nested key."""
    import re

    from driftloop.data.contract import Column, Contract

    page = (PROJECT_ROOT / "docs" / "contracts.md").read_text()
    sections = {m.group(1): m.start() for m in re.finditer(r"^## (.+)$", page, re.M)}
    fields = _model_fields(Contract) | {f"columns.*.{k}": None for k in Column.model_fields}
    missing = []
    for path in fields:
        parts = path.split(".")
        if len(parts) == 1:
            body = _section(page, sections, path)
            if len(body.strip().splitlines()) < 3:
                missing.append(f"section '## {path}' (empty or absent)")
        elif f"`{parts[-1]}`" not in page:
            missing.append(f"`{parts[-1]}` ({path})")
    assert not missing, f"docs/contracts.md lacks: {missing}"
    for section in ("Reserved column names", "What contract SQL may do", "Baseline models"):
        assert section in sections
