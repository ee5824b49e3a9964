"""The soak's traffic: a population fixed after the warm-up, and the window entries it reports."""

from __future__ import annotations

from types import SimpleNamespace

from tools.soak import Population


def _records(*users: str | None) -> list[SimpleNamespace]:
    return [SimpleNamespace(user_id=u) if u is not None else SimpleNamespace(course_id="c1") for u in users]


def test_population_after_freeze_sends_only_users_seen_before():
    pop = Population(_records("a", "b", None, "c", "a", "d", None, "b"))
    it = iter(pop)
    assert [next(it).user_id for _ in range(2)] == ["a", "b"]
    pop.freeze()
    rest = list(it)
    # the catalogue record passes, c and d (new after the freeze) are left out, a and b still send
    assert [getattr(r, "user_id", None) for r in rest] == [None, "a", None, "b"]
    assert pop.left_out == 2
    assert dict(pop.events) == {"a": 2, "b": 2}


def test_population_unfrozen_sends_everyone():
    pop = Population(_records("a", "b", "a", "c"))
    assert [r.user_id for r in pop] == ["a", "b", "a", "c"]
    assert pop.left_out == 0 and len(pop.events) == 3


def test_window_slots_count_at_most_the_bound_per_user():
    pop = Population(_records(*(["a"] * 5 + ["b"] * 2)))
    list(pop)
    assert pop.window_slots(3) == 3 + 2
    assert pop.window_slots(128) == 7


def test_proc_cpu_counts_this_process_and_none_for_a_gone_one():
    import os
    import subprocess
    import sys

    from tools.bench.children import proc_cpu_s

    before = proc_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))  # some CPU
    after = proc_cpu_s(os.getpid())
    assert before is not None and after is not None and after > before
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert proc_cpu_s(child.pid) is None

