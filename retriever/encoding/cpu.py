"""What this CPU can run fast: the int8 kernel family, detected from the CPU's own flags."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@cache
def int8_kernel() -> str:
    """The int8 kernel family of this CPU: ``arm64``, ``avx512_vnni``, ``avx_vnni``, ``avx2`` or ``generic``.

    It decides how int8 models are quantized here (without VNNI, x86 int8 products can saturate,
    so weights keep 7 bits) and is part of an int8 export's cache key: an export made for one
    family is not reused on another.
    """
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu_flags()
    for family in ("avx512_vnni", "avx_vnni", "avx2"):
        if family in flags:
            return family
    return "generic"


def int8_reduce_range() -> bool:
    """Whether int8 weights must keep 7 bits here (x86 without VNNI instructions)."""
    return int8_kernel() in ("avx2", "generic")
