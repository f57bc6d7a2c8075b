"""Device, precision and memory choices for inference: CUDA when present, bf16 only where it is fast, window
memory budgets, and a CPU allocator setting that keeps freed activations for reuse."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU; asking for CUDA without one is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda") from exc


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 convolutions beat fp32."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    return native and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Map 'auto'/'fp32'/'bf16'/'fp16' to a dtype; auto = bf16 on capable GPUs/CPUs, fp16 on older GPUs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        if precision == "fp16" and device.type == "cpu":
            raise ValueError("fp16 inference is not supported on CPU; use bf16 or fp32")
        return _DTYPES[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


CPU_MEMORY_BUDGET = 128 << 20
"""Activation memory for model windows on CPU. Measured on a 2-core AMD EPYC (bf16), against 96 and 192 MiB:
as fast or faster at 512 and 1024 input (SRResNet body windows near 400x400 stay in the 32 MB L3 and run ~1.5x
faster per pixel than 512x512 ones), and a 2048x2048 x4 upscale peaks ~40 MB lower than at 192 MiB."""
CUDA_BUDGET_SHARE = 0.5
MIN_MEMORY_BUDGET = 16 << 20


def default_memory_budget(device: torch.device) -> int:
    """Bytes of activations tiled inference may hold at once: :data:`CPU_MEMORY_BUDGET` on CPU, half the memory
    currently free on a CUDA device."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(MIN_MEMORY_BUDGET, int(free * CUDA_BUDGET_SHARE))
    return CPU_MEMORY_BUDGET


def cache_sized_windows(device: torch.device) -> bool:
    """Whether the memory-heavy last stage should run on cache-sized pieces (CPUs: much faster per pixel), or on
    pieces as large as the budget allows (GPUs, where many small kernels would cost more in launches than they
    save)."""
    return device.type != "cuda"


MALLOC_MMAP_THRESHOLD = 512 << 20
MALLOC_TRIM_THRESHOLD = 1 << 30
GLIBC_MMAP_CEILING = 32 << 20
"""The ceiling of glibc's dynamic mmap threshold on 64-bit: by default a block this large or larger is mapped fresh
on every allocation, its pages faulted and zeroed each time."""
_freed_memory_kept = False
_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache
def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def fresh_allocation_size(device: torch.device) -> int | None:
    """Bytes from which each allocation on ``device`` comes as fresh, page-faulted memory (:data:`GLIBC_MMAP_CEILING`
    on a glibc CPU with its default settings), or None where large blocks are recycled: CUDA's caching allocator,
    after :func:`keep_freed_cpu_memory`, under the user's own ``MALLOC_*`` settings, other C libraries."""
    if device.type != "cpu" or _freed_memory_kept or not _glibc():
        return None
    if any(os.environ.get(k) for k in _MALLOC_VARIABLES):
        return None
    return GLIBC_MMAP_CEILING


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Let glibc reuse freed activation memory instead of returning it to the kernel after every layer.

    By default glibc serves large allocations (and, after trimming, smaller ones) with fresh pages, so each layer's
    output is page-faulted and zeroed anew: measured here, ``sr-upscale`` on a folder spends 5x the system time and
    ~8% more wall time without this. The price is memory that stays in the heap after an upscale (a process-wide
    change, its freed memory not returned), so the library never calls it itself: ``sr-upscale`` and the app do, as
    processes that upscale many images. Done once per process, only on glibc, and not when the user has set
    ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (or ``SR_STUDIO_NO_MALLOC_TUNING=1``). Returns whether
    the thresholds were set.
    """
    if platform.system() != "Linux" or any(
        os.environ.get(k) for k in (*_MALLOC_VARIABLES, "SR_STUDIO_NO_MALLOC_TUNING")
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc
        return False
    global _freed_memory_kept
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _freed_memory_kept = bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD)
    )
    return _freed_memory_kept
