"""Property-based tests of every boundary where outside data enters (Hypothesis).

Two profiles: ``quick`` (the default, part of ``make test``: derandomized, so every run tries the same examples,
and short) and ``deep`` (``make fuzz``: at least 10,000 examples per boundary, random). Every test reports what each
example came to through :func:`observe`; ``make fuzz`` prints the tally (boundary, examples tried, distinct errors
seen, failures) from the file ``FEISHU_VC_FUZZ_REPORT`` names.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict

from hypothesis import HealthCheck, settings

settings.register_profile(
    "quick", max_examples=60, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)  # fmt: skip
settings.register_profile(
    "deep", max_examples=10_000, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)  # fmt: skip
settings.load_profile(os.environ.get("FEISHU_VC_FUZZ_PROFILE", "quick"))

#: Per boundary: examples tried, the distinct outcomes that were errors, and failures (properties broken).
TALLY: dict[str, dict[str, object]] = defaultdict(lambda: {"examples": 0, "errors": set(), "failures": 0})


def observe(boundary: str, error: BaseException | None = None) -> None:
    """Count one example of ``boundary``; ``error`` is the typed error it ended in, if any (counted by kind and
    message shape: digits and quoted values left out)."""
    entry = TALLY[boundary]
    entry["examples"] = int(entry["examples"]) + 1  # type: ignore[call-overload]
    if error is not None:
        shape = re.sub(r"\{.*\}|\[.*\]|'[^']*'|\"[^\"]*\"|\d+", "_", str(error))[:60]
        entry["errors"].add(f"{type(error).__name__}: {shape}")  # type: ignore[union-attr]


def fail(boundary: str) -> None:
    entry = TALLY[boundary]
    entry["failures"] = int(entry["failures"]) + 1  # type: ignore[call-overload]


def pytest_sessionfinish() -> None:
    path = os.environ.get("FEISHU_VC_FUZZ_REPORT")
    if not path:
        return
    report = {
        boundary: {"examples": e["examples"], "distinct_errors": len(e["errors"]), "failures": e["failures"],  # type: ignore[arg-type]
                   "errors": sorted(e["errors"])}  # type: ignore[arg-type]
        for boundary, e in sorted(TALLY.items())
    }  # fmt: skip
    with open(path, "w") as handle:
        json.dump(report, handle, indent=1, ensure_ascii=False)
