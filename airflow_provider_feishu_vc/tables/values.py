"""Feishu's cell texts to typed Arrow arrays, a whole column at a time (``pyarrow.compute``, no Python loop over
cells). Each parser returns the typed array; a cell that holds text but does not parse becomes null there, and
:func:`first_bad_cell` finds it, so that the reader can name it instead of letting a null pass silently.

The formats (``shared/feishu-vc-api.md``): times ``2022.07.21 11:01:40 (GMT+08:00)`` (also with ``-`` or ``/``
between the date's parts, a ``T``, no seconds, ``UTC``/``GMT``/``Z`` or no offset at all: then the reader's time
zone applies); durations ``H:MM:SS`` with any number of hours; yes/no as 是 / 否, yes / no, true / false; counts as
digits; figures as a number with a unit (``50kbps``, ``5 ms``, ``2%``), converted to the column's unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_feishu_vc.tables.contract import Column, ValueKind

#: Feishu's own spelling of a time: checked first, parsed by position (fast); anything else by the general rule.
FEISHU_TIME = r"^\d{4}\.\d{2}\.\d{2} \d{2}:\d{2}:\d{2} \(GMT[+-]\d{2}:\d{2}\)$"
ANY_TIME = (
    r"^\s*(?P<y>\d{4})[./-](?P<mo>\d{1,2})[./-](?P<d>\d{1,2})"
    r"(?:[ T]+(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2}))?)?"
    r"\s*(?:(?P<z>Z)|\(?\s*(?:GMT|UTC)?\s*(?P<sign>[+-])(?P<oh>\d{1,2})(?::?(?P<om>\d{2}))?\s*\)?)?\s*$"
)
DURATION = r"^\s*(?P<h>\d{1,9}):(?P<m>[0-5]?\d):(?P<s>[0-5]?\d)\s*$"
COUNT = r"^\s*[+-]?\d{1,18}(?:\.0*)?\s*$"
FIGURE = r"^\s*(?P<n>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<u>[A-Za-z%/]*)\s*$"
TRUE_WORDS = ("是", "yes", "y", "true", "1")
FALSE_WORDS = ("否", "no", "n", "false", "0")
#: For each unit a column is named by, the units its cells may carry and the factor to that unit.
UNIT_FACTORS: Mapping[str, Mapping[str, float]] = {
    "kbps": {"": 1.0, "kbps": 1.0, "kb/s": 1.0, "bps": 0.001, "mbps": 1000.0, "mb/s": 1000.0},
    "ms": {"": 1.0, "ms": 1.0, "s": 1000.0},
    "pct": {"": 1.0, "%": 1.0},
    "fps": {"": 1.0, "fps": 1.0},
    "db": {"": 1.0, "db": 1.0},
}

MICROS = 1_000_000


def present(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a cell holds something other than whitespace."""
    return pc.and_kleene(pc.is_valid(values), pc.not_equal(pc.utf8_trim_whitespace(values), ""))


def first_bad_cell(values: pa.ChunkedArray, typed: pa.ChunkedArray | pa.Array) -> int | None:
    """The index of the first cell that holds text but did not parse, or None."""
    bad = pc.and_(pc.fill_null(present(values), False), pc.is_null(typed))
    if not pc.any(bad).as_py():
        return None
    return int(pc.index(bad, True).as_py())


def parse(column: Column, values: pa.ChunkedArray, timezone: str) -> pa.ChunkedArray | pa.Array:
    """The typed array of ``column``'s cell texts (null where a cell is empty or does not parse)."""
    if column.kind is ValueKind.TEXT:
        return pc.if_else(present(values), values, pa.scalar(None, pa.string()))
    if column.kind is ValueKind.TIME:
        return parse_times(values, timezone)
    if column.kind is ValueKind.DURATION:
        return parse_durations(values)
    if column.kind is ValueKind.BOOL:
        return parse_bools(values)
    if column.kind is ValueKind.COUNT:
        return parse_counts(values)
    return parse_figures(values, column.unit or "")


def _ints(text: Any) -> Any:
    return pc.cast(text, pa.int64())


def _or_zero(text: Any) -> Any:
    return pc.if_else(pc.equal(text, ""), "0", text)


def parse_times(values: pa.ChunkedArray, timezone: str) -> pa.ChunkedArray | pa.Array:
    """``timestamp[us, UTC]``: the offset written in a value wins; a value without one is local time in
    ``timezone``."""
    utc = pa.timestamp("us", tz="UTC")
    cells = pc.if_else(present(values), values, pa.scalar(None, pa.string()))
    if pc.all(pc.fill_null(pc.match_substring_regex(cells, FEISHU_TIME), True)).as_py():
        return _feishu_times(cells, utc)
    parts = pc.extract_regex(pc.fill_null(cells, ""), ANY_TIME)  # null where the text is not a time at all
    field = {name: pc.struct_field(parts, name) for name in ("y", "mo", "d", "h", "mi", "s", "z", "sign", "oh", "om")}
    text = pc.binary_join_element_wise(
        field["y"], "-", pc.utf8_lpad(field["mo"], 2, "0"), "-", pc.utf8_lpad(field["d"], 2, "0"), " ",
        pc.utf8_lpad(_or_zero(field["h"]), 2, "0"), ":", pc.utf8_lpad(_or_zero(field["mi"]), 2, "0"), ":",
        pc.utf8_lpad(_or_zero(field["s"]), 2, "0"), "",
    )  # fmt: skip
    naive = pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="us", error_is_null=True)
    hours, minutes = _ints(_or_zero(field["oh"])), _ints(_or_zero(field["om"]))
    offset = pc.multiply(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)), MICROS)
    offset = pc.if_else(pc.equal(field["sign"], "-"), pc.negate(offset), offset)
    sane_offset = pc.and_(pc.less_equal(hours, 14), pc.less(minutes, 60))
    has_offset = pc.or_(pc.not_equal(field["sign"], ""), pc.equal(field["z"], "Z"))
    from_offset = pc.subtract(pc.cast(naive, pa.int64()), offset)
    local = pc.cast(
        pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest", nonexistent="earliest"), pa.int64()
    )
    chosen = pc.if_else(has_offset, pc.if_else(sane_offset, from_offset, pa.scalar(None, pa.int64())), local)
    return pc.cast(chosen, utc)


def _feishu_times(values: pa.ChunkedArray, utc: pa.DataType) -> Any:
    """Every value is spelled as Feishu spells it: parse by position."""
    naive = pc.strptime(
        pc.utf8_slice_codeunits(values, 0, 19), format="%Y.%m.%d %H:%M:%S", unit="us", error_is_null=True
    )
    hours = _ints(pc.utf8_slice_codeunits(values, 25, 27))
    minutes = _ints(pc.utf8_slice_codeunits(values, 28, 30))
    offset = pc.multiply(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)), MICROS)
    offset = pc.if_else(pc.equal(pc.utf8_slice_codeunits(values, 24, 25), "-"), pc.negate(offset), offset)
    sane = pc.and_(pc.less_equal(hours, 14), pc.less(minutes, 60))
    utc_micros = pc.subtract(pc.cast(naive, pa.int64()), offset)
    return pc.cast(pc.if_else(sane, utc_micros, pa.scalar(None, pa.int64())), utc)


def parse_durations(values: pa.ChunkedArray) -> Any:
    """``H:MM:SS`` to seconds (``int64``)."""
    parts = pc.extract_regex(pc.fill_null(values, ""), DURATION)
    hours, minutes, seconds = (_ints(pc.struct_field(parts, name)) for name in ("h", "m", "s"))
    return pc.add(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)), seconds)


def parse_bools(values: pa.ChunkedArray) -> Any:
    words = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    yes = pc.is_in(words, value_set=pa.array(TRUE_WORDS, pa.string()))
    no = pc.is_in(words, value_set=pa.array(FALSE_WORDS, pa.string()))
    return pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))


def parse_counts(values: pa.ChunkedArray) -> Any:
    ok = pc.fill_null(pc.match_substring_regex(values, COUNT), False)
    digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(values), r"\.0*$", "")
    digits = pc.if_else(ok, digits, "0")  # cast only what matched; the rest becomes null below
    return pc.if_else(ok, pc.cast(digits, pa.int64()), pa.scalar(None, pa.int64()))


def parse_figures(values: pa.ChunkedArray, unit: str) -> Any:
    """A number with a unit, converted to ``unit`` (``double``); a unit the column cannot hold does not parse."""
    parts = pc.extract_regex(pc.fill_null(values, ""), FIGURE)
    number = pc.cast(pc.if_else(pc.is_valid(parts), pc.struct_field(parts, "n"), "0"), pa.float64())
    written = pc.utf8_lower(pc.struct_field(parts, "u"))
    factors = UNIT_FACTORS.get(unit, {"": 1.0})
    result: Any = pc.multiply(number, pa.scalar(None, pa.float64()))  # null until a unit matches
    for written_unit, multiplier in factors.items():
        result = pc.if_else(pc.equal(written, written_unit), pc.multiply(number, multiplier), result)
    return result
