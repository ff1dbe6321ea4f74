"""Feishu's cell texts to typed Arrow arrays, a whole column at a time (``pyarrow.compute``, no Python loop over
cells). Each parser returns the typed array; a cell that holds text but does not parse becomes null there, and
:func:`first_bad_cell` finds it, so that the reader can name it instead of letting a null pass silently.

The formats (``shared/feishu-vc-api.md``): times ``2022.07.21 11:01:40 (GMT+08:00)`` (also with ``-`` or ``/``
between the date's parts, a ``T``, no seconds, ``UTC``/``GMT`` with an offset, or ``Z``, ``UTC``, ``GMT`` alone (offset
zero), or no offset at all: then the reader's time zone applies); durations ``H:MM:SS`` with any number of hours;
yes/no as 是 / 否, yes / no, true / false; counts as digits, with a sign or not (``+3`` is 3); figures as a number
with a unit in any case (``50kbps``, ``5 ms``, ``0.8%``), converted to the column's unit. ``-``, ``--`` or ``—``
alone is null in every typed column (:data:`NO_VALUE_MARKS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_feishu_vc.tables.contract import Column, ValueKind

ANY_TIME = (
    r"^\s*(?P<y>\d{4})[./-](?P<mo>\d{1,2})[./-](?P<d>\d{1,2})"
    r"(?:[ T]+(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2}))?)?"
    r"\s*(?:(?P<z>Z)|(?P<zone>(?i:GMT|UTC))|\(\s*(?P<pzone>(?i:GMT|UTC))\s*\)"
    r"|\(?\s*(?i:GMT|UTC)?\s*(?P<sign>[+-])(?P<oh>\d{1,2})(?::?(?P<om>\d{2}))?\s*\)?)?\s*$"
)
DURATION = r"^\s*(?P<h>\d{1,9}):(?P<m>[0-5]?\d):(?P<s>[0-5]?\d)\s*$"
COUNT = r"^\s*[+-]?\d{1,18}(?:\.0*)?\s*$"
#: What Feishu writes where it has no value (its JSON list APIs write ``-``; the files render the same data): alone in
#: a cell, after trimming, these are null in every typed column. Text columns keep them as written.
NO_VALUE_MARKS = ("-", "--", "\u2014")
FIGURE = r"^\s*(?P<n>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<u>[A-Za-z%/]*)\s*$"
TRUE_WORDS = ("是", "yes", "y", "true", "1")
FALSE_WORDS = ("否", "no", "n", "false", "0")
FEISHU_YES_NO = pa.array(["是", "否"], pa.string())
#: For each unit a column is named by, the units its cells may carry and the factor to that unit.
UNIT_FACTORS: Mapping[str, Mapping[str, float]] = {
    "kbps": {"": 1.0, "kbps": 1.0, "kb/s": 1.0, "bps": 0.001, "mbps": 1000.0, "mb/s": 1000.0},
    "ms": {"": 1.0, "ms": 1.0, "s": 1000.0},
    "pct": {"": 1.0, "%": 1.0},
    "fps": {"": 1.0, "fps": 1.0},
    "db": {"": 1.0, "db": 1.0},
}

MICROS = 1_000_000
#: strptime("%H:%M:%S") puts a time of day on 1900-01-01: seconds since the epoch of that midnight.
MIDNIGHT_1900 = -2_208_988_800


def present(values: Any) -> Any:
    """True where a cell holds something other than whitespace (null where it is empty)."""
    return pc.not_equal(pc.utf8_trim_whitespace(values), "")


def no_blank_text(values: Any) -> bool:
    """Whether no cell holds only whitespace (then every non-null cell is present)."""
    return not pc.any(pc.equal(pc.utf8_trim_whitespace(values), "")).as_py()


def first_bad_cell(values: Any, typed: Any) -> int | None:
    """The index of the first cell that holds text but did not parse, or None. A no-value mark alone
    (:data:`NO_VALUE_MARKS`) parses as null in every typed column, so it is never a bad cell."""
    if typed.null_count == values.null_count:  # every null was an empty cell already (the usual case: cheap)
        return None
    marked = pc.is_in(pc.utf8_trim_whitespace(values), value_set=pa.array(NO_VALUE_MARKS, pa.string()))
    bad = pc.and_(pc.and_(pc.fill_null(present(values), False), pc.is_null(typed)), pc.invert(marked))
    if not pc.any(bad).as_py():
        return None
    return int(pc.index(bad, True).as_py())


def parse(column: Column, values: Any, timezone: str) -> Any:
    """The typed array of ``column``'s cell texts (null where a cell is empty or does not parse)."""
    if column.kind is ValueKind.TEXT:
        if no_blank_text(values):
            return values  # as it is: no copy
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


def _blank_as_null(values: Any) -> Any:
    """The cells, with whitespace-only ones null (no copy when there are none)."""
    if no_blank_text(values):
        return values
    return pc.if_else(present(values), values, pa.scalar(None, pa.string()))


def _marks_as_null(cells: Any) -> Any:
    """The cells with every no-value mark null, or None when there is none. For a typed column whose fast parse
    met cells it could not read: a column of Feishu's spelling with some ``-`` then still takes the fast path."""
    marked = pc.is_in(pc.utf8_trim_whitespace(cells), value_set=pa.array(NO_VALUE_MARKS, pa.string()))
    if not pc.any(marked).as_py():
        return None
    return pc.if_else(marked, pa.scalar(None, pa.string()), cells)


def _first_text(values: Any) -> str | None:
    valid = values.drop_null() if values.null_count else values
    return valid[0].as_py() if len(valid) else None


def _ints(text: Any) -> Any:
    return pc.cast(text, pa.int64())


def _or_zero(text: Any) -> Any:
    return pc.if_else(pc.equal(text, ""), "0", text)


def parse_times(values: Any, timezone: str) -> Any:
    """``timestamp[us, UTC]``: the offset written in a value wins; a value without one is local time in
    ``timezone``."""
    utc = pa.timestamp("us", tz="UTC")
    cells = _blank_as_null(values)
    fast = _feishu_times(cells, utc, timezone)
    if fast is None and (unmarked := _marks_as_null(cells)) is not None:
        cells = unmarked
        fast = _feishu_times(cells, utc, timezone)
    if fast is not None:
        return fast
    parts = pc.extract_regex(pc.fill_null(cells, ""), ANY_TIME)  # null where the text is not a time at all
    names = ("y", "mo", "d", "h", "mi", "s", "z", "zone", "pzone", "sign", "oh", "om")
    field = {name: pc.struct_field(parts, name) for name in names}
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
    zone_only = pc.or_(
        pc.or_(pc.equal(field["z"], "Z"), pc.not_equal(field["zone"], "")), pc.not_equal(field["pzone"], "")
    )
    has_offset = pc.or_(pc.not_equal(field["sign"], ""), zone_only)  # Z, UTC or GMT alone: offset zero
    from_offset = pc.subtract(pc.cast(naive, pa.int64()), offset)
    local = pc.cast(
        pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest", nonexistent="earliest"), pa.int64()
    )
    chosen = pc.if_else(has_offset, pc.if_else(sane_offset, from_offset, pa.scalar(None, pa.int64())), local)
    return pc.cast(chosen, utc)


#: Feishu's offset suffix, once the date and time (19 characters) are cut off.
FEISHU_OFFSET = re.compile(r" \(GMT([+-])(\d{2}):(\d{2})\)")


def _feishu_times(cells: Any, utc: pa.DataType, timezone: str) -> Any:
    """When every value is spelled as Feishu spells it, with one offset for all (the usual file) or none at all
    (the quality list's), parse them in one pass with that spelling; None when some value is spelled otherwise (the
    general rule reads those, or names them)."""
    first = _first_text(cells)
    if first is None:
        return pc.cast(pc.cast(cells, pa.int64()), utc) if len(cells) else pa.array([], utc)
    match = FEISHU_OFFSET.fullmatch(first[19:]) if len(first) > 19 else None
    if match is None and len(first) != 19:
        return None
    if match is not None:
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 14 or minutes >= 60:
            return None
        offset = (-1 if match.group(1) == "-" else 1) * (hours * 3600 + minutes * 60) * MICROS
        pattern = "%Y.%m.%d %H:%M:%S" + first[19:].replace("%", "%%")
    else:
        pattern = "%Y.%m.%d %H:%M:%S"
    naive = pc.strptime(cells, format=pattern, unit="us", error_is_null=True)
    if naive.null_count != cells.null_count:
        return None
    if match is None:
        return pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest", nonexistent="earliest").cast(utc)
    return pc.cast(pc.subtract(pc.cast(naive, pa.int64()), offset), utc)


def parse_durations(values: Any) -> Any:
    """``H:MM:SS`` to seconds (``int64``)."""
    cells = _blank_as_null(values)
    clock = pc.strptime(cells, format="%H:%M:%S", unit="s", error_is_null=True)  # under 24 hours: fast, in C++
    if clock.null_count != cells.null_count and (unmarked := _marks_as_null(cells)) is not None:
        cells = unmarked
        clock = pc.strptime(cells, format="%H:%M:%S", unit="s", error_is_null=True)
    if clock.null_count == cells.null_count:
        return pc.subtract(pc.cast(clock, pa.int64()), MIDNIGHT_1900)
    parts = pc.extract_regex(pc.fill_null(cells, ""), DURATION)
    hours, minutes, seconds = (_ints(pc.struct_field(parts, name)) for name in ("h", "m", "s"))
    return pc.add(pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60)), seconds)


def parse_bools(values: Any) -> Any:
    if pc.all(pc.fill_null(pc.is_in(values, value_set=FEISHU_YES_NO), True)).as_py():  # 是 / 否 only: no folding
        return pc.equal(values, "是")
    words = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    yes = pc.is_in(words, value_set=pa.array(TRUE_WORDS, pa.string()))
    no = pc.is_in(words, value_set=pa.array(FALSE_WORDS, pa.string()))
    return pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))


def parse_counts(values: Any) -> Any:
    try:
        return pc.cast(values, pa.int64())  # plain digits, the usual case
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    unmarked = _marks_as_null(values)
    if unmarked is not None:
        try:
            return pc.cast(unmarked, pa.int64())  # plain digits and no-value marks
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = unmarked
    ok = pc.fill_null(pc.match_substring_regex(values, COUNT), False)
    digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(values), r"^\+|\.0*$", "")  # Arrow refuses "+3"
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
