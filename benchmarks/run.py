"""Run every benchmark and print one table: figure, baseline beside it, goal, PASS/FAIL.

python benchmarks/run.py                   # everything (about 10 minutes on 2 cores)
python benchmarks/run.py --sizes 100 --downloads 256 --baseline-sizes ""
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import download, imports, waiting

ROWS: list[tuple[str, str, str, str, str]] = []


def row(section: str, figure: str, ours: str, baseline: str = "", verdict: bool | None = None) -> None:
    ROWS.append((section, figure, ours, baseline, "" if verdict is None else ("PASS" if verdict else "FAIL")))
    print(" | ".join(ROWS[-1]), flush=True)  # as it comes, so that a crash later keeps what was measured


def ratio(ours: float, base: float) -> str:
    return f"{base / ours:.1f}x" if ours else "inf"


def bench_waiting(
    sizes: list[int], scale: float, poll: float, spread: tuple[float, float], baseline_sizes: list[int]
) -> None:
    budget = 100 * scale * 0.9
    for n in sizes:
        ours = waiting.run_case_isolated("ours", n, scale, poll, spread)
        base = waiting.run_case_isolated("baseline", n, scale, poll, spread) if n in baseline_sizes else None
        section = f"wait N={n}"
        under_budget = n / poll * 60 <= budget
        b = (lambda value: value) if base else (lambda value: "")
        row(
            section,
            "finished",
            f"{ours.finished}/{n} in {ours.seconds:.0f} s",
            b(f"{base.finished}/{n} in {base.seconds:.0f} s") if base else "",
            ours.finished == n,
        )
        row(
            section,
            "token requests (goal 1)",
            str(ours.token_requests),
            b(f"{base.token_requests} ({ratio(ours.token_requests, base.token_requests)})") if base else "",
            ours.token_requests == 1,
        )
        row(
            section,
            f"status requests/min (budget {budget:.0f})",
            f"{ours.status_per_minute:.0f}",
            b(f"{base.status_per_minute:.0f}") if base else "",
            ours.status_per_minute <= budget * 1.05,
        )
        row(
            section,
            "429s seen (goal 0)",
            str(ours.rate_limited),
            b(str(base.rate_limited)) if base else "",
            ours.rate_limited == 0,
        )
        row(
            section,
            "worst event-loop lag (goal < 50 ms)",
            f"{ours.worst_lag_ms:.1f} ms",
            b(f"{base.worst_lag_ms:.1f} ms") if base else "",
            ours.worst_lag_ms < 50,
        )
        row(
            section,
            "memory per waiting trigger (goal < 20 KiB)",
            f"{ours.kib_per_wait:.1f} KiB",
            b(f"{base.kib_per_wait:.1f} KiB") if base else "",
            ours.kib_per_wait < 20,
        )
        row(
            section,
            "connection errors (timeouts, resets)",
            "retried in the trigger; see 'finished'",
            b(str(base.transport_errors)) if base else "",
        )
        row(
            section,
            "CPU seconds",
            f"{ours.cpu_seconds:.1f}",
            b(f"{base.cpu_seconds:.1f} ({ratio(ours.cpu_seconds, base.cpu_seconds)})") if base else "",
        )
        goal = f"goal <= {poll + 1:.0f} s" if under_budget else "over budget: stretched by design"
        row(
            section,
            f"done -> event delay p50 / max ({goal})",
            f"{ours.delay_p50:.1f} / {ours.delay_max:.1f} s",
            b(f"{base.delay_p50:.1f} / {base.delay_max:.1f} s") if base else "",
            ours.delay_max <= poll + 1 if under_budget else None,
        )


def bench_downloads(sizes_mib: list[int]) -> None:
    for mib in sizes_mib:
        results = download.run_size(mib)
        curl = results[0]
        section = f"download {mib} MiB"
        row(section, "curl -o throughput (baseline)", "", f"{curl.mb_per_s:.0f} MB/s")
        for result in results[1:]:
            row(
                section,
                f"{result.label}: throughput (goal >= 0.9 x curl)",
                f"{result.mb_per_s:.0f} MB/s",
                f"{result.mb_per_s / curl.mb_per_s:.2f} x curl",
                result.mb_per_s >= 0.9 * curl.mb_per_s if "local" in result.label else None,
            )
            row(
                section,
                f"{result.label}: one-time set-up paid by a process's first download",
                f"{result.first_extra_seconds:.2f} s",
            )
            memory_goal = "local" in result.label
            label = "goal < 64 MiB" if memory_goal else "the file itself lives in RAM"
            row(
                section,
                f"{result.label}: peak RSS growth ({label})",
                f"{result.peak_growth_mib:.1f} MiB",
                "",
                result.peak_growth_mib is not None and result.peak_growth_mib < 64 if memory_goal else None,
            )


def bench_imports() -> None:
    measured = imports.run()
    row(
        "import",
        "provider modules on top of airflow.sdk (goal < 30 ms)",
        f"{measured['ms']:.1f} ms",
        "",
        measured["ms"] < 30,
    )
    row("import", "resident memory added", f"{measured['kib']:.0f} KiB, {measured['modules']} modules")
    row(
        "import",
        "httpx/anyio/openpyxl/requests adapters/triggers newly imported (goal none)",
        ", ".join(measured["heavy"]) or "none",
        "",
        not measured["heavy"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,3000", help="numbers of concurrent waits")
    parser.add_argument("--scale", type=float, default=20.0, help="time scale of Feishu's rate window (20: 3 s)")
    parser.add_argument("--poll", type=float, default=5.0, help="poll interval of each wait, seconds")
    parser.add_argument("--spread", default="2,20", help="exports finish uniformly between these seconds")
    parser.add_argument("--downloads", default="256,1024", help="export sizes in MiB; empty to skip")
    parser.add_argument(
        "--baseline-sizes", default="100,1000", help="sizes that also run the baseline (3000 takes ~15 min and 5 GB)"
    )
    parser.add_argument("--skip-waiting", action="store_true")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of baseline sockets at once
    bench_imports()
    if not args.skip_waiting:
        low, high = (float(x) for x in args.spread.split(","))
        sizes = [int(x) for x in args.sizes.split(",") if x]
        baseline_sizes = [int(x) for x in args.baseline_sizes.split(",") if x]
        bench_waiting(sizes, args.scale, args.poll, (low, high), baseline_sizes)
    if args.downloads:
        bench_downloads([int(x) for x in args.downloads.split(",") if x])
    print(f"\nMachine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    widths = [max(len(r[i]) for r in [("section", "figure", "ours", "baseline", "verdict"), *ROWS]) for i in range(5)]
    for line in [("section", "figure", "ours", "baseline", "verdict"), *ROWS]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    failed = [r for r in ROWS if r[4] == "FAIL"]
    print(f"\n{len(ROWS) - len(failed)} rows, {sum(r[4] == 'PASS' for r in ROWS)} PASS, {len(failed)} FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
