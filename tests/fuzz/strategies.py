"""Hypothesis strategies for what the outside world sends and what users type."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hypothesis import strategies as st

#: Numbers JSON has no words for, which Python's encoder writes as ``Infinity``, ``-Infinity`` and ``NaN`` (and a
#: float too large to read back, which :func:`bodies` writes as ``1e400``).
non_finite = st.sampled_from([math.inf, -math.inf, math.nan])
#: Any number an answer may carry in a numeric field: ints of any size, floats, and the non-finite ones.
numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) | non_finite
#: A character that is some kind of digit in Unicode without being an ASCII one: decimal (Nd: ``٣``, ``１``), other
#: (No: ``⑦``, ``²``, ``₀``, ``½``) and letter numbers (Nl: ``Ⅻ``).
unicode_digits = st.characters(categories=["Nd", "No", "Nl"], exclude_characters="0123456789")
#: What a user may type for a number: ASCII digits with other Unicode digits mixed in, a sign, white space of any
#: kind (no-break and figure spaces too) around it.
digit_strings = st.builds(
    lambda sign, digits, before, after: f"{before}{sign}{''.join(digits)}{after}",
    st.sampled_from(["", "-", "+", "--"]),
    st.lists(st.sampled_from("0123456789") | unicode_digits, min_size=1, max_size=12),
    st.sampled_from(["", " ", "\u00a0", "\u2007", "\t"]),
    st.sampled_from(["", " ", "\u00a0", "\u2007", "\n"]),
)
#: Any JSON value, nested a little.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | non_finite,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
#: Text that is numeric-looking junk, the shapes header values take.
junk_numbers = (
    st.sampled_from(
        [
            "inf",
            "-inf",
            "nan",
            "NaN",
            "1e309",
            "-1",
            "0",
            "0.5",
            "2.7",
            "abc",
            "",
            " 5 ",
            "1_000",
            "0x10",
            "99999999999",
        ]
    )
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.text(max_size=12)
    | digit_strings
)
statuses = st.sampled_from([200, 200, 200, 301, 302, 400, 401, 403, 404, 429, 500, 502, 503, 504]) | st.integers(
    100, 599
)
header_names = st.sampled_from(
    ["content-type", "x-ogw-ratelimit-reset", "x-ogw-ratelimit-limit", "x-tt-logid", "location", "content-length",
     "content-disposition"]
)  # fmt: skip
header_values = junk_numbers | st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/html", "application/octet-stream",
     "https://evil.example/steal", "attachment; filename=\"a.xlsx\""]
)  # fmt: skip
headers = st.dictionaries(header_names, header_values, max_size=5)


def envelope(data: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Feishu's envelope, every key optional and every value any JSON (right types most of the time)."""
    return st.fixed_dictionaries(
        {},
        optional={
            "code": st.sampled_from([0, 0, 0, 121001, 121002, 121003, 121004, 121005, 99991400, 99991663, 99991672,
                                     20064, 20050, 10003]) | numbers | json_values,
            "msg": st.text(max_size=40) | json_values,
            "data": data | json_values,
            "tenant_access_token": st.text(min_size=1, max_size=20) | json_values,
            "expire": numbers | digit_strings | json_values,
            "error": st.fixed_dictionaries({}, optional={"log_id": json_values, "permission_violations": json_values,
                                                         "field_violations": json_values}) | json_values,
        },
    )  # fmt: skip


status_data = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([1, 2, 3, "3", 0, 7]) | numbers | digit_strings | json_values,
        "file_token": st.text(max_size=30) | json_values,
        "url": st.text(max_size=30) | json_values,
        "fail_msg": st.text(max_size=30) | json_values,
        "task_id": st.text("0123456789", min_size=1, max_size=20) | json_values,
    },
)


#: Python's encoder writes an infinity as ``Infinity``; half the time, write it as a number too large for a float.
_INFINITY = re.compile(r"(?<![A-Za-z\"])(-?)Infinity(?![A-Za-z\"])")


def as_json(value: Any, huge: bool) -> bytes:
    """``value`` as Python's encoder writes it (``Infinity``, ``NaN`` for non-finite numbers), or with ``1e400`` for
    each infinity."""
    text = json.dumps(value)
    return (_INFINITY.sub(r"\g<1>1e400", text) if huge else text).encode()


def bodies(data: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """An answer's body: an envelope, any JSON, a truncated envelope, or raw bytes."""
    enveloped = st.builds(as_json, envelope(data), st.booleans())
    return st.one_of(
        enveloped,
        enveloped,
        json_values.map(lambda value: json.dumps(value).encode()),
        st.tuples(enveloped, st.integers(0, 40)).map(lambda cut: cut[0][: max(0, len(cut[0]) - cut[1])]),
        st.binary(max_size=60),
        st.just(b"<html><body>502 Bad Gateway</body></html>"),
    )
