"""Run a list of jobs as decode -> compute -> encode with the three steps of neighbouring jobs overlapped.

The next job's input is decoded on one thread and the previous job's result encoded on another while the caller's
thread computes (torch and Pillow release the GIL in their kernels), so the compute step is never left waiting on
file I/O. At most one decoded input and two results wait at any time, so memory stays bounded. The decode and
encode threads run at a lower scheduling priority (Linux: per-thread nice), so on a machine whose cores all run the
model's threads they fill its idle moments instead of stalling its parallel regions.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

HELPER_NICE = 10
"""How much lower than the caller's the decode and encode threads' priority is (0: the same)."""

J = TypeVar("J")
D = TypeVar("D")
R = TypeVar("R")


def run_overlapped(
    jobs: Sequence[J],
    decode: Callable[[J], D],
    compute: Callable[[J, D], R],
    encode: Callable[[J, R], None],
    finished: Callable[[J, BaseException | None], None],
    expected: tuple[type[BaseException], ...],
) -> None:
    """decode, compute and encode every job, calling ``finished(job, error)`` once per job in order; ``error`` is
    the exception (one of ``expected``) that stopped that job, or None. Any other exception propagates."""
    if not jobs:
        return
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="sr-decode", initializer=_lower_priority) as decoder,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="sr-encode", initializer=_lower_priority) as encoder,
    ):
        saving: deque[tuple[J, Future[None]]] = deque()
        upcoming = decoder.submit(decode, jobs[0])
        for index, job in enumerate(jobs):
            current = upcoming
            if index + 1 < len(jobs):
                upcoming = decoder.submit(decode, jobs[index + 1])
            try:
                result = compute(job, current.result())
            except expected as exc:
                _drain(saving, finished, expected, keep=0)
                finished(job, exc)
                continue
            saving.append((job, encoder.submit(encode, job, result)))
            del result
            _drain(saving, finished, expected, keep=1)
        _drain(saving, finished, expected, keep=0)


def _drain(
    saving: deque[tuple[J, Future[None]]],
    finished: Callable[[J, BaseException | None], None],
    expected: tuple[type[BaseException], ...],
    keep: int,
) -> None:
    """Wait for queued encodes until at most ``keep`` remain, reporting each job as it completes."""
    while len(saving) > keep:
        job, future = saving.popleft()
        try:
            future.result()
        except expected as exc:
            finished(job, exc)
        else:
            finished(job, None)


def _lower_priority() -> None:
    """Lower this thread's priority by :data:`HELPER_NICE` where the OS schedules threads by their own nice value
    (Linux); elsewhere, or when not permitted, leave it."""
    if HELPER_NICE and sys.platform.startswith("linux"):  # elsewhere a thread id is no process id to renice
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + HELPER_NICE)
