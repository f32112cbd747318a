"""Benchmark 4: time to sample a batch of 64 28x28 images from the PixelCNN VHE.

``model.sample(inputs={"c": D})``: c from its encoder given a 5-shot support set D per row,
z from its prior, then x by the PixelCNN in raster order (784 passes over a window of rows).
The deconv decoder (one pass) is timed too, for reference. The batch is doubled from 1
while the next one surely fits the time budget (the cost is sub-linear in the batch, so
t(2b) <= 2 t(b)); when 64 does not fit (the PixelCNN on a slow CPU), the time is extrapolated
from the largest batch measured with the slope of the last doubling (``extrapolated``,
``batch_used``, ``slope_s_per_image``, ``by_batch_s``).

    python -m bench.bench_sample [--small] [--device cpu|cuda] [--batch 64] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

from . import common

NAME = "sample"


def support_sets(batch: int, k_shot: int, device) -> torch.Tensor:
    """(batch, k_shot, 1, 28, 28): k_shot images of each of the first ``batch`` classes."""
    s, _ = common.background_set()
    rows = []
    for c in range(batch):
        idx = (s.character == c % s.n_classes).nonzero().flatten()[:k_shot]
        rows.append(s.images[idx])
    return torch.stack(rows).to(device=device, dtype=torch.float32)


def time_sample(model, D, device, bf16: bool) -> float:
    t0 = common.now(device)
    with common.autocast(device, bf16):
        x = model.sample(inputs={"c": D})
    t = common.now(device) - t0
    assert x.shape == (D.shape[0], 1, 28, 28), x.shape
    return t


def run(
    small: bool = False,
    device: str = "cpu",
    profiles=None,
    decoders=common.DECODERS,
    batch: int = 64,
    budget: float | None = None,
    repeats: int | None = None,
    out=None,
) -> dict:
    dev = common.resolve_device(device)
    profiles = list(profiles or (["cpu"] if dev.type == "cpu" else ["cpu", "paper"]))
    budget = budget if budget is not None else (3.0 if small else 60.0)
    repeats = repeats or (1 if small else 3)
    variants = [False, True] if dev.type == "cuda" else [False]
    settings = {
        "profiles": profiles,
        "decoders": list(decoders),
        "batch_target": batch,
        "k_shot": 5,
        "budget_s_per_row": budget,
        "repeats": repeats,
        "statistic": "min over repeats",
        "device": str(dev),
        "small": small,
        "note": "seconds for a batch of batch_target; when batch_used < batch_target, "
        "time(batch_used) + slope * (batch_target - batch_used)",
    }
    result = common.header(dev, settings)
    rows, skipped = [], []
    for profile, decoder, exp, cfg, source in common.each_model(profiles, decoders, dev, skipped):
        model = exp.model.eval()
        for bf16 in variants:
            time_sample(model, support_sets(1, 5, dev), dev, bf16)  # warm-up
            # double the batch while the next one surely fits the budget (the cost is sub-linear
            # in the batch: t(2b) <= 2 t(b)); past it, extrapolate with the last doubling's slope
            b, t = 1, time_sample(model, support_sets(1, 5, dev), dev, bf16)
            prev, measured = None, {1: t}
            while b < batch and (2 * t <= budget or (b == 1 and t <= budget)):  # >= 2 points for a slope
                prev = (b, t)
                b = min(2 * b, batch)
                t = time_sample(model, support_sets(b, 5, dev), dev, bf16)
                measured[b] = t
            times = [t] + [
                time_sample(model, support_sets(b, 5, dev), dev, bf16)
                for _ in range(repeats - 1)
                if (repeats - 1) * t <= budget
            ]
            t = min(times)
            slope = (t - prev[1]) / (b - prev[0]) if prev else t
            slope = max(slope, 0.0)
            t_batch = t + slope * (batch - b)
            rows.append(
                {
                    "profile": profile,
                    "decoder": decoder,
                    "device": dev.type,
                    "variant": "bf16" if bf16 else "fp32",
                    "batch_used": b,
                    "seconds": t,
                    "s_per_batch64" if batch == 64 else f"s_per_batch{batch}": t_batch,
                    "images_per_s": batch / t_batch,
                    "extrapolated": b < batch,
                    "slope_s_per_image": slope,
                    "all_s": times,
                    "by_batch_s": measured,
                    "arch": common.arch_summary(cfg),
                }
            )
        del exp, model
    result["skipped"] = skipped
    key = "s_per_batch64" if batch == 64 else f"s_per_batch{batch}"
    cols = ["profile", "decoder", "device", "variant", "batch_used", key, "images_per_s", "extrapolated"]
    return common.finish(result, NAME, out, cols, rows, title=f"Sampling a batch of {batch} (28x28, 5-shot c)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CI mode: short budget (batch extrapolated)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument(
        "--profiles", nargs="+", default=None, help="cpu | paper | path (default: cpu on a CPU, cpu paper on CUDA)"
    )
    p.add_argument("--decoders", nargs="+", default=list(common.DECODERS), choices=common.DECODERS)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--budget", type=float, default=None, help="seconds per row before the batch is reduced")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help=f"JSON path (default bench/results/{NAME}.json)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run(a.small, a.device, a.profiles, a.decoders, a.batch, a.budget, a.repeats, a.out)


if __name__ == "__main__":
    main()
