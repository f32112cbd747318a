"""bench.bench_train: which precision, compile and layout variants a run measures."""

import torch

from bench.bench_train import _variants

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_cpu_measures_fp32_and_bf16_only_when_asked():
    assert _variants(CPU, None) == [(False, False)]
    assert _variants(CPU, None, cpu_bf16=True) == [(False, False), (True, False)]  # the ratio rates.json prices
    assert _variants(CPU, True, cpu_bf16=True) == [(False, False), (True, False), (False, True)]


def test_cuda_measures_every_combination_unless_compile_is_off():
    assert _variants(CUDA, None) == [(False, False), (True, False), (False, True), (True, True)]
    assert _variants(CUDA, False) == [(False, False), (True, False)]


def test_layouts_are_the_profiles_unless_asked_and_lay_out_the_weights():
    from bench.common import lay_out, layouts

    assert layouts({"memory_format": "channels_last"}) == ["channels_last"]
    assert layouts({"memory_format": "contiguous"}) == ["contiguous"]
    assert layouts({"memory_format": "channels_last"}, ["contiguous", "channels_last"]) == [
        "contiguous",
        "channels_last",
    ]
    conv = torch.nn.Conv2d(3, 4, 3)
    assert lay_out(conv, "channels_last").weight.is_contiguous(memory_format=torch.channels_last)
    assert lay_out(conv, "contiguous").weight.is_contiguous()
