"""The contract SQL sandbox: what a contract's SQL expressions may do, and the event time
they compute.

A contract's SQL (the target and event-time expressions, `extra_features`, a rolling
feature's `value` and `known_at`) is one scalar expression over the row's columns. It may
call DuckDB's scalar functions and operators; it may not contain a subquery, a table
function (`read_csv`, `read_parquet`, `glob`, ...), a FROM clause or a second statement.
`check_expression` enforces that on DuckDB's own parse tree when a contract is loaded, and
the expressions evaluated here run on connections with external access disabled (no
files, no network), so a contract can compute values but never read anything else.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

# Where ingestion stores an event time computed from `event_time.expression` in the raw
# partitions (like `_source_file`, a name no landed column may take).
DERIVED_EVENT_TIME = "_event_time"
# Clauses of a SELECT that a scalar expression cannot produce; any of them means the
# expression text broke out of its parentheses (e.g. with a comment).
_CLAUSES = ("where_clause", "having", "qualify", "sample")


class UnsafeSQLError(ValueError):
    """An expression that the sandbox refuses; the message says which construct."""


def sandboxed_connection(allowed_directories: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that cannot read or write files or reach the network.

    `allowed_directories` (absolute folders) stay readable, e.g. the lake table a feature
    query reads; registered pandas frames and Arrow tables are always usable.
    """
    import duckdb

    con = duckdb.connect()
    if allowed_directories:
        folders = ", ".join(
            "'" + d.rstrip("/").replace("'", "''") + "/'" for d in allowed_directories
        )
        con.execute(f"SET allowed_directories = [{folders}]")
    con.execute("SET enable_external_access = false")
    return con


# The process's parsing connection: opening a DuckDB connection costs as much as parsing a
# hundred expressions, and a code location with many contracts parses hundreds at import.
_PARSER: dict[int, duckdb.DuckDBPyConnection] = {}


def _parser() -> duckdb.DuckDBPyConnection:
    """An in-memory connection of this process, keyed by pid: a forked child (a Celery pool
    process, a forkserver's) opens its own and leaves its parent's untouched, as closing a
    connection whose threads stayed in the parent is not safe."""
    import duckdb

    pid = os.getpid()
    if pid not in _PARSER:
        _PARSER[pid] = duckdb.connect()
    return _PARSER[pid]


def _parse(statement: str) -> dict[str, Any]:
    cursor = _parser().cursor()  # a cursor per call: threads must not share one
    try:
        text = cursor.execute("SELECT json_serialize_sql(?)", [statement])
        return json.loads(text.fetchall()[0][0])
    finally:
        cursor.close()


def _walk(node: Any, seen: list[str], columns: set[str]) -> None:
    if isinstance(node, dict):
        kind = node.get("class")
        if kind == "SUBQUERY":
            seen.append("a subquery")
        elif kind == "COLUMN_REF" and node.get("column_names"):
            columns.add(node["column_names"][-1])
        if node.get("type") in ("TABLE_FUNCTION", "BASE_TABLE", "JOIN", "SUBQUERY"):
            seen.append(f"a FROM clause ({node['type'].lower().replace('_', ' ')})")
        for value in node.values():
            _walk(value, seen, columns)
    elif isinstance(node, list):
        for value in node:
            _walk(value, seen, columns)


def check_expression(expression: str) -> set[str]:
    """Refuse anything but one scalar expression; return the column names it refers to.

    The expression is parsed by DuckDB twice, as `SELECT <expression>` and as
    `SELECT (<expression>) AS __x`: each parse tree must hold one SELECT of exactly one
    select-list item (no alias of its own in the first) and nothing else. Text that
    parses in only one of the two forms depends on what surrounds it (unbalanced
    parentheses, such as `1) AS a, (2`) and is refused. Raises UnsafeSQLError naming the
    construct (subquery, table function, FROM clause, another statement, another item).
    Syntax errors in both forms are left to the caller's compile step.
    """
    bare = _parse(f"SELECT {expression}")
    wrapped = _parse(f"SELECT ({expression}) AS __x")
    for tree in (bare, wrapped):
        if "Only SELECT" in str(tree.get("error_message", "")):
            raise UnsafeSQLError("only one scalar expression is allowed, not another statement")
    if bare.get("error") and wrapped.get("error"):
        return set()  # a syntax error: compiling the expression reports it with its position
    if bare.get("error") or wrapped.get("error"):
        raise UnsafeSQLError(
            f"contract SQL {expression!r} is not one self-contained expression: it parses "
            "only inside parentheses or only outside them (unbalanced parentheses, or an AS "
            "or a comma of its own)"
        )
    columns = _check_tree(wrapped)
    _check_tree(bare)
    [item] = bare["statements"][0]["node"]["select_list"]
    if item.get("alias"):
        raise UnsafeSQLError(
            f"contract SQL {expression!r} names its result (AS {item['alias']}): the "
            "contract's field names it"
        )
    return columns


def _check_tree(tree: dict[str, Any]) -> set[str]:
    """The checks of `check_expression` on one parse tree; the column names referred to."""
    statements = tree.get("statements", [])
    if len(statements) != 1:
        raise UnsafeSQLError("only one scalar expression is allowed, not several statements")
    node = statements[0].get("node", {})
    problems: list[str] = []
    if node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1:
        problems.append("more than one expression")
    if node.get("from_table", {}).get("type") != "EMPTY":
        problems.append("a FROM clause")
    if any(node.get(clause) for clause in _CLAUSES) or node.get("group_expressions"):
        problems.append("a WHERE/GROUP BY/HAVING clause")
    if node.get("modifiers") or node.get("cte_map", {}).get("map"):
        problems.append("ORDER BY/LIMIT/WITH")
    columns: set[str] = set()
    _walk(node.get("select_list", []), problems, columns)
    if problems:
        found = ", ".join(dict.fromkeys(problems))
        raise UnsafeSQLError(
            f"contract SQL is one scalar expression over the row's columns; found {found} "
            "(tables, files and subqueries are not available to a contract)"
        )
    return columns
