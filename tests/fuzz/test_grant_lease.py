"""The refresh lease and the saves of a user's grant under generated schedules (issue 36): 3-5 processes with 1-2
callers each (a task's thread and an event loop) and up to 2 children forked from them (``os.fork``), wall clocks up
to 5 minutes apart, a store whose writes land up to 10 s late, fail, or land although reported failed, outages of up
to 30 s, Feishu answering within seconds, and kills (kill -9) at any step. The real flows run in the deterministic
simulation of :mod:`tests.client.grant_sim`.

What must hold (docs/connections.md, "Acting as a user"):
- never a lost grant: the store ends with Feishu's live refresh token, unless a kill fell in the window between
  Feishu's answer and the first save attempt (the grant is then lost by construction: only the killed process knew
  the successor);
- never two refreshes of one token (with the same exception, after which other processes may send the lost
  token's predecessor once each and hear 20064);
- never a spent token sent twice by one process; never a release that overwrites another process's lease.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_feishu_vc.client.protocol import Step
from tests.client.grant_sim import Feishu, Process, Simulation, Store, fetches
from tests.fuzz.conftest import fail, observe

BOUNDARY = "user grant: lease and saves (simulated schedules)"


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, object]:
    processes = draw(st.integers(3, 5))
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "callers": [draw(st.integers(1, 2)) for _ in range(processes)],
        "fetches": draw(st.integers(1, 3)),
        "starts": [draw(st.floats(0, 400)) for _ in range(processes)],
        "skews": [draw(st.floats(-300, 300)) for _ in range(processes)],
        "failure_rate": draw(st.sampled_from([0.0, 0.02, 0.1, 0.2])),
        "late_rate": draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
        "kill_rate": draw(st.sampled_from([0.0, 0.0, 0.005, 0.02])),
        "outages": draw(st.lists(st.tuples(st.floats(0, 500), st.floats(1, 30)), max_size=2)),
        # The store going down the moment Feishu answers the n-th refresh (every save of it fails for a while).
        "outage_on_answer": draw(st.none() | st.tuples(st.integers(1, 3), st.floats(1, 30))),
        "feishu_latency": draw(st.floats(0.05, 8.0)),
        # Children a process forks (a task's multiprocessing pool): (parent, seconds after the parent started).
        "forks": draw(st.lists(st.tuples(st.integers(0, processes - 1), st.floats(0, 300)), max_size=2)),
    }


def simulate(schedule: dict[str, object]) -> Simulation:
    rng = random.Random(schedule["seed"])  # type: ignore[arg-type]
    failure_rate, late_rate = float(schedule["failure_rate"]), float(schedule["late_rate"])  # type: ignore[arg-type]

    def plan(process: str, action: str, index: int) -> tuple[float, float, str]:
        latency = rng.uniform(0.001, 0.5)
        delay = rng.uniform(0.0, 10.0) if rng.random() < late_rate else 0.0
        roll = rng.random()
        outcome = "ok" if roll >= failure_rate else ("lost" if roll < failure_rate / 2 else "fail")
        return latency, delay, outcome

    top = float(schedule["feishu_latency"])  # type: ignore[arg-type]
    store = Store(plan=plan, outages=[(start, start + length) for start, length in schedule["outages"]])  # type: ignore[attr-defined]
    feishu = Feishu(latency=lambda process, index: rng.uniform(0.01, top))
    if schedule["outage_on_answer"] is not None:
        nth, length = schedule["outage_on_answer"]  # type: ignore[misc]
        answers = iter(range(1, 10**6))

        def outage(now: float) -> None:
            if next(answers) == nth:
                store.outages.append((now, now + length))

        feishu.on_issue = outage
    kill_rate = float(schedule["kill_rate"])  # type: ignore[arg-type]

    def kill(process: Process, step: Step) -> bool:
        return rng.random() < kill_rate

    sim = Simulation(store, feishu, kill=kill)
    parents = []
    for index, callers in enumerate(schedule["callers"]):  # type: ignore[arg-type]
        parents.append(sim.add(
            f"p{index}",
            [fetches(int(schedule["fetches"]), lambda: rng.uniform(0.1, 90.0)) for _ in range(callers)],  # type: ignore[arg-type]
            at=schedule["starts"][index],  # type: ignore[index]
            wall_skew=schedule["skews"][index],  # type: ignore[index]
            origin=rng.uniform(-1e6, 1e6),
        ))  # fmt: skip
    for number, (parent, after) in enumerate(schedule.get("forks") or []):  # type: ignore[attr-defined]
        sim.add(
            f"p{parent}-child{number}",
            [fetches(int(schedule["fetches"]), lambda: rng.uniform(0.1, 90.0))],  # type: ignore[arg-type]
            at=schedule["starts"][parent] + after,  # type: ignore[index]
            forked_from=parents[parent],
        )
    return sim.run()


@given(schedules())
def test_the_lease_and_the_saves_hold_under_generated_schedules(schedule: dict[str, object]) -> None:
    sim = simulate(schedule)
    broken = sim.violations()
    observe(BOUNDARY, AssertionError(broken[0]) if broken else None)
    if broken:
        fail(BOUNDARY)
    assert broken == [], (broken, schedule)
