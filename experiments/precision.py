"""Whether to train under CPU bf16 autocast (``train.amp_cpu: auto | true | false``).

Where it pays depends on the CPU: with native bf16 instructions (AVX512-BF16 or AMX-BF16) it was
faster than fp32 on one machine and no faster, or slower, on another; without them PyTorch emulates
bf16 and the steps run several times slower. ``auto`` turns it on only where the instructions
exist; the cpu profile trains in fp32, the same arithmetic on every CPU. The measurements are in
bench/README.md and the rates the cost model prices with in pipeline/rates.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = [
    "BF16_FLAGS",
    "AVX2_ONLY_FLAGS",
    "cpu_flags",
    "cpu_name",
    "cpu_has_fast_bf16",
    "cpu_is_avx2_only",
    "resolve_amp_cpu",
]

log = logging.getLogger(__name__)

#: /proc/cpuinfo flags of native bf16 arithmetic (x86: AVX512-BF16, AMX-BF16)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty where it is unreadable,
    e.g. not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU model of the first processor in ``cpuinfo`` ("model name"), else
    ``platform.processor()`` or ``platform.machine()`` (where it is unreadable or has none)."""
    import platform

    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (one of ``BF16_FLAGS``); False when it does not
    or cannot be told (then fp32 is the safe choice)."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


#: the flags of a CPU with AVX2 and nothing wider (what ``vhe-estimate --avx2-only`` prices)
AVX2_ONLY_FLAGS = frozenset({"avx", "avx2", "fma"})


def cpu_is_avx2_only(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has AVX2 but not AVX-512 (x86 ``avx512f``): PyTorch's fp32 kernels are then
    the AVX2 ones; False otherwise, including where the flags cannot be read or the CPU is not x86."""
    flags = cpu_flags() if flags is None else flags
    return "avx2" in flags and "avx512f" not in flags


def resolve_amp_cpu(setting, flags: frozenset[str] | None = None) -> bool:
    """Whether to train under CPU bf16 autocast for ``train.amp_cpu`` = ``setting``.

    ``"auto"``: only on a CPU with native bf16; ``True``: always (with a warning where the CPU
    lacks it); ``False``/``None``: never.
    """
    if setting is None or setting is False:
        return False
    fast = cpu_has_fast_bf16(flags)
    if setting == "auto":
        return fast
    if setting is True:
        if not fast:
            log.warning(
                "train.amp_cpu: true on a CPU without native bf16 (%s): bf16 autocast runs "
                "several times slower than fp32 here; use amp_cpu: auto",
                "/".join(sorted(BF16_FLAGS)),
            )
        return True
    raise ValueError(f"train.amp_cpu must be true, false or 'auto', got {setting!r}")
