"""The data contract row by row: the row-level rules of the expectation suites, evaluated with pandas.

Great Expectations validates every daily batch (`features/validation.py`): right for a batch, but one
call costs ~100-300 ms on a small frame, too slow for a request. The live entry (`POST /events`)
checks its rows here instead: the same suite files (`features/expectations/*.json`), the same rules and
parameters, evaluated by pandas in about a millisecond. `tests/data/test_contract.py` runs both on the
same frame and checks they flag the same rows for the same expectations, so a rule lives in one place,
the suite. An expectation type this module cannot evaluate makes it fail loudly, never pass silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features.validation import describe_expectation, load_suite_spec

TABLE_LEVEL = {"expect_table_columns_to_match_set"}
"""Table-level expectations: on the live path the request schema enforces them (columns and types)."""


@dataclass(frozen=True)
class Violation:
    """One broken rule of one row: the field, the expectation (as the batch reports name it) and why."""

    field: str | None
    rule: str
    reason: str


def _not_null(col: pd.Series, kwargs: dict, params: dict) -> tuple[pd.Series, Callable]:
    return col.isna(), lambda v: "is missing"


def _unique(col: pd.Series, kwargs: dict, params: dict) -> tuple[pd.Series, Callable]:
    return col.notna() & col.duplicated(keep=False), lambda v: f"{v!r} is not unique"


def _in_set(col: pd.Series, kwargs: dict, params: dict) -> tuple[pd.Series, Callable]:
    spec = kwargs["value_set"]
    values = _resolve(spec, params)
    name = spec["$PARAMETER"] if isinstance(spec, dict) else sorted(values)
    known = values if isinstance(values, set | frozenset) else set(values)
    # membership row by row: a request's few rows against a large catalogue cost microseconds, where
    # `isin` would hash the whole catalogue on every call
    found = pd.Series([v in known for v in col.astype(object)], index=col.index, dtype=bool)
    bad = col.notna() & ~found
    return bad, lambda v: f"{v!r} is not in {name}"


def _between(col: pd.Series, kwargs: dict, params: dict) -> tuple[pd.Series, Callable]:
    low, high = _resolve(kwargs.get("min_value"), params), _resolve(kwargs.get("max_value"), params)
    strict_min, strict_max = kwargs.get("strict_min", False), kwargs.get("strict_max", False)
    bad = pd.Series(False, index=col.index)
    if low is not None:
        bad |= col.notna() & ((col <= low) if strict_min else (col < low))
    if high is not None:
        bad |= col.notna() & ((col >= high) if strict_max else (col > high))
    lo_name, hi_name = _bound_name(kwargs.get("min_value"), low), _bound_name(kwargs.get("max_value"), high)

    def reason(v) -> str:
        if low is not None and ((v <= low) if strict_min else (v < low)):
            return f"{_show(v)} is before {lo_name}"
        return f"{_show(v)} is after {hi_name}"

    return bad, reason


ROW_LEVEL: dict[str, Callable] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_unique": _unique,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_between": _between,
}


def row_violations(
    table: str, df: pd.DataFrame, parameters: dict, suite: dict | None = None
) -> dict[int, list[Violation]]:
    """The rows of `df` that break a row-level expectation of `table`'s suite, and what each broke.

    Args:
        table: the suite's table (`events`, `items`, `users`).
        df: rows in the raw contract (`recflow.data.schema.conform`); keys of the result are its index.
        parameters: the suite's `$PARAMETER` values (`features.validation.events_parameters` builds them).
        suite: the suite spec; by default the repository's (`load_suite_spec(table)`).

    Raises:
        ValueError: if the suite holds an expectation type evaluated neither here nor by the schema,
            or names a parameter that `parameters` lacks.
    """
    out: dict[int, list[Violation]] = {}
    for exp in (suite or load_suite_spec(table))["expectations"]:
        kind, kwargs = exp["type"], exp["kwargs"]
        if kind in TABLE_LEVEL:
            continue
        if kind not in ROW_LEVEL:
            raise ValueError(f"{table} suite: {kind} has no row-level evaluation in features/contract.py")
        column = kwargs["column"]
        bad, reason = ROW_LEVEL[kind](df[column], kwargs, parameters)
        rule = describe_expectation(kind, column)
        for index, value in df.loc[bad.to_numpy(), column].items():
            out.setdefault(index, []).append(Violation(column, rule, f"{column} {reason(value)}"))
    return out


def _resolve(spec, params: dict):
    if isinstance(spec, dict) and "$PARAMETER" in spec:
        name = spec["$PARAMETER"]
        if name not in params:
            raise ValueError(f"parameter {name!r} of the suite is missing; got {sorted(params)}")
        return params[name]
    return spec


def _bound_name(spec, value) -> str:
    name = spec["$PARAMETER"] if isinstance(spec, dict) else "the bound"
    return f"{name} ({_show(value)})"


def _show(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)
