"""experiments.precision: train.amp_cpu = auto | true | false against the CPU's bf16 flags."""

import logging

import pytest

from experiments.precision import (
    AVX2_ONLY_FLAGS,
    cpu_flags,
    cpu_has_fast_bf16,
    cpu_is_avx2_only,
    cpu_name,
    resolve_amp_cpu,
)

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
GENOA = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "amx_tile", "amx_bf16"}


def test_cpu_flags_reads_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()  # not Linux: nothing known


def test_cpu_name_reads_the_model_name_and_falls_back_to_platform(tmp_path):
    import platform

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert cpu_name(info) == "Intel(R) Xeon(R) Processor"
    assert cpu_name(tmp_path / "missing") == (platform.processor() or platform.machine())


@pytest.mark.parametrize(
    "flags, fast", [(AVX2_ONLY, False), (GENOA, True), (SAPPHIRE_RAPIDS, True), (frozenset(), False)]
)
def test_auto_uses_bf16_only_with_native_instructions(flags, fast):
    assert cpu_has_fast_bf16(flags) is fast
    assert resolve_amp_cpu("auto", flags) is fast


def test_true_and_false_are_kept_and_true_warns_without_native_bf16(caplog):
    with caplog.at_level(logging.WARNING, logger="experiments.precision"):
        assert resolve_amp_cpu(True, GENOA) is True
        assert not caplog.records
        assert resolve_amp_cpu(True, AVX2_ONLY) is True
    assert "slower" in caplog.text
    assert resolve_amp_cpu(False, GENOA) is False and resolve_amp_cpu(None, GENOA) is False


def test_bad_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="true, false or 'auto'"):
        resolve_amp_cpu("yes", GENOA)


@pytest.mark.parametrize(
    "flags, avx2_only",
    [
        (AVX2_ONLY, True),
        (AVX2_ONLY_FLAGS, True),  # what vhe-estimate --avx2-only prices
        (GENOA, False),
        (SAPPHIRE_RAPIDS, False),
        (frozenset(), False),
        (frozenset({"neon"}), False),
    ],
)
def test_avx2_only_means_avx2_without_avx512(flags, avx2_only):
    assert cpu_is_avx2_only(flags) is avx2_only
