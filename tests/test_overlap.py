"""run_overlapped: every job decoded, computed and encoded once, in order, with steps of neighbours overlapping."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from sr_core.overlap import run_overlapped


def test_every_job_runs_once_and_is_reported_in_order():
    log, reported = [], []
    run_overlapped(
        list(range(6)),
        decode=lambda j: log.append(("decode", j)) or j * 10,
        compute=lambda j, d: log.append(("compute", j)) or d + 1,
        encode=lambda j, r: log.append(("encode", j, r)),
        finished=lambda j, e: reported.append((j, e)),
        expected=(ValueError,),
    )
    assert reported == [(j, None) for j in range(6)]
    assert sorted(e for e in log if e[0] == "encode") == [("encode", j, j * 10 + 1) for j in range(6)]
    assert [e for e in log if e[0] == "compute"] == [("compute", j) for j in range(6)]


def test_decode_and_encode_overlap_the_compute_step():
    """With each step sleeping 50 ms, overlapped steps take about one step per job, not three."""
    step = 0.05
    threads: set[str] = set()

    def work(*_):
        threads.add(threading.current_thread().name)
        time.sleep(step)
        return 0

    start = time.perf_counter()
    run_overlapped(list(range(8)), work, work, work, lambda j, e: None, (ValueError,))
    elapsed = time.perf_counter() - start
    assert elapsed < 8 * 3 * step * 0.6  # serial would be 1.2 s
    assert any(n.startswith("sr-decode") for n in threads) and any(n.startswith("sr-encode") for n in threads)


def test_failures_are_reported_per_job_and_the_rest_still_run():
    reported = []

    def decode(j):
        if j == 1:
            raise OSError("unreadable")
        return j

    def compute(j, d):
        if j == 2:
            raise ValueError("bad size")
        return d

    def encode(j, r):
        if j == 3:
            raise OSError("disk full")

    run_overlapped(list(range(5)), decode, compute, encode, lambda j, e: reported.append((j, e)), (OSError, ValueError))
    assert [j for j, _ in reported] == [0, 1, 2, 3, 4]
    errors = {j: str(e) for j, e in reported if e is not None}
    assert errors == {1: "unreadable", 2: "bad size", 3: "disk full"}


def test_unexpected_errors_propagate():
    def compute(j, d):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_overlapped([1, 2], lambda j: j, compute, lambda j, r: None, lambda j, e: None, (OSError,))


def test_no_jobs_is_a_no_op():
    run_overlapped([], lambda j: j, lambda j, d: d, lambda j, r: None, lambda j, e: None, (OSError,))


@pytest.mark.skipif(not hasattr(threading, "get_native_id") or sys.platform != "linux", reason="per-thread nice")
def test_decode_and_encode_threads_run_at_a_lower_priority():
    """Linux schedules threads by their own nice value: the helpers sit HELPER_NICE below the computing thread."""
    from sr_core.overlap import HELPER_NICE

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen: dict[str, int] = {}
    run_overlapped(
        [0, 1],
        decode=lambda j: seen.setdefault("decode", nice()),
        compute=lambda j, d: seen.setdefault("compute", nice()),
        encode=lambda j, r: seen.setdefault("encode", nice()),
        finished=lambda j, e: None,
        expected=(ValueError,),
    )
    expected = min(19, seen["compute"] + HELPER_NICE)
    assert seen["decode"] == seen["encode"] == expected
