"""The reliability claims under faults, with real processes: a Tansu broker, a Redis and
workers this test owns, a simulator event file of ~3,100 events for ~300 users.

Each scenario runs the file through fresh processes with one fault and compares every user's
final state, last profile and last list in Kafka and the Redis copies with the fault-free run
of the same store (what is compared, and why, is in tests/fault/harness.py ``compare`` and in
docs/reliability.md); 0 users may differ.
"""

from __future__ import annotations

import pytest

from tests.fault.conftest import RESULTS
from tests.fault.harness import compare, summarise, users_differing
from tests.fault.scenarios import BAD_RECORDS, SCENARIOS, run_scenario

pytestmark = [pytest.mark.fault]
STORES = ["memory://", "rocksdb://"]
REFERENCE_STORE = "memory://"


def _record(run, diff, flags):  # noqa: ANN001, ANN202
    RESULTS[(run.scenario, run.store)] = {
        "differing": len(users_differing(diff)),
        "aspects": {a: len(u) for a, u in diff.items() if u},
        "flags": flags,
        "wall_s": run.wall_s,
    }


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fault(scenario: str, store: str, fault_events, baseline, tmp_path) -> None:  # noqa: ANN001
    records, expected = fault_events
    # the reference is the fault-free run on the memory store, for both stores: the outcome must
    # not depend on the store, and it is checked against the event file's counts below.
    # ``fault_free`` itself is the second fault-free run: it must equal the first (the
    # comparison ignores exactly what differs between two fault-free runs)
    base = baseline(REFERENCE_STORE)
    run = run_scenario(scenario, store, tmp_path, records)
    diff = compare(run.outcome, base.outcome, expected)
    # the baseline's own state must match the event file (else comparing with it proves little)
    base_counts = compare(base.outcome, base.outcome, expected)["counts"]
    flags: list[str] = []
    if base_counts:
        flags.append(f"baseline counts wrong for {len(base_counts)} users")
    if not run.quiet.get("caught_up"):
        flags.append(f"not caught up (lag {run.quiet.get('lag')})")
    if scenario == "broker_loss" and not str(run.notes.get("broker_loss_noticed", "")).startswith(("exited", "not ready")):
        flags.append("ran on silently after broker loss")
    if run.outcome.split_state:
        flags.append(f"state of {len(run.outcome.split_state)} users in 2+ changelog partitions")
    if scenario == "bad_records":
        n_dlq = len(run.outcome.dlq)
        if n_dlq != BAD_RECORDS:
            flags.append(f"DLQ {n_dlq} != {BAD_RECORDS}")
    _record(run, diff, flags)
    detail = summarise(diff)
    assert not flags and not detail, (
        f"{scenario} on {store}: {len(users_differing(diff))} users differ; {flags}; {detail}; "
        f"notes={run.notes}; quiet={run.quiet}"
    )
