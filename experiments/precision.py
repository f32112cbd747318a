"""Whether bf16 autocast pays on this CPU (``train.amp_cpu: auto | true | false``).

bf16 autocast of the training steps is 1.3x (deconv) / 1.6x (PixelCNN) the targets/s of fp32 on
a CPU with native bf16 instructions (AVX512-BF16 or AMX-BF16), but on one without them (AVX2 only,
e.g. AMD EPYC Zen 3) PyTorch emulates bf16 and the same steps run 7-8x *slower* (measured
2026-12-04, cpu-profile networks, one thread: deconv 82 -> 632 ms per step, PixelCNN 328 -> 2474
ms). ``auto`` turns it on only where the instructions exist.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["BF16_FLAGS", "cpu_flags", "cpu_has_fast_bf16", "resolve_amp_cpu"]

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


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (one of ``BF16_FLAGS``); False when it does not
    or cannot be told (then fp32 is the safe choice)."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


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
