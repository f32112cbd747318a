"""Benchmark 3: evaluation throughput of ``vhe.evaluate.log_marginal`` (classes/s at K = 1000).

log p(X) for classes of 20 images with K importance samples costs K x 20 decoder (and
encoder) evaluations per class, linear in K. The model is the class-structured VHE of a
profile (random weights: speed does not depend on them), the classes come from the
background set. When K = 1000 would take longer than the time budget (the PixelCNN on a CPU),
a smaller K is measured and classes/s is extrapolated linearly to K = 1000 (``extrapolated``
and ``k_used`` say so); ``decodes_per_s`` (images x samples / s) does not depend on K.

    python -m bench.bench_eval [--small] [--device cpu|cuda] [--k 1000] [--classes 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools

import torch

from vhe.evaluate import log_marginal

from . import common

NAME = "eval"


def classes_tensor(n_classes: int, per_class: int, device) -> torch.Tensor:
    """(n_classes, per_class, 1, 28, 28) float32: the first images of the first classes of the background set."""
    s, _ = common.background_set()
    rows = []
    for c in range(n_classes):
        idx = (s.character == c).nonzero().flatten()[:per_class]
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} < {per_class} images")
        rows.append(s.images[idx])
    return torch.stack(rows).to(device=device, dtype=torch.float32)


def time_log_marginal(model, X, k: int, device, bf16: bool, max_elements: int = 8192) -> tuple[float, torch.Tensor]:
    t0 = common.now(device)
    with common.autocast(device, bf16):
        est = log_marginal(model, X, n_samples=k, max_elements=max_elements)
    return common.now(device) - t0, est


def pick_k(
    model, X, k_target: int, k_probe: int, budget: float, device, bf16: bool, max_elements: int = 8192
) -> tuple[int, float, torch.Tensor]:
    """Measure K = k_target if it fits the budget (from a probe at k_probe), else the largest K that
    does; log_marginal decodes at most ``max_elements`` images at once."""
    t_probe, est = time_log_marginal(model, X, k_probe, device, bf16, max_elements)  # also the warm-up
    if k_probe >= k_target:
        t_probe, est = time_log_marginal(model, X, k_target, device, bf16, max_elements)
        return k_target, t_probe, est
    per_k = t_probe / k_probe
    k = int(min(k_target, max(k_probe, budget / max(per_k, 1e-9))))
    if k == k_probe:
        return k, t_probe, est
    t, est = time_log_marginal(model, X, k, device, bf16, max_elements)
    return k, t, est


def run(
    small: bool = False,
    device: str = "cpu",
    profiles=None,
    decoders=common.DECODERS,
    k: int | None = None,
    n_classes: int | None = None,
    per_class: int = 20,
    budget: float | None = None,
    out=None,
    memory_formats=None,
) -> dict:
    dev = common.resolve_device(device)
    profiles = list(profiles or (["cpu"] if dev.type == "cpu" else ["cpu", "paper"]))
    k_target = k or 1000
    n_classes = n_classes or (1 if small else 4)
    budget = budget if budget is not None else (3.0 if small else 60.0)
    k_probe = min(k_target, 2 if small else 5)
    variants = [False, True] if dev.type == "cuda" else [False]
    settings = {
        "profiles": profiles,
        "decoders": list(decoders),
        "k_target": k_target,
        "k_probe": k_probe,
        "classes": n_classes,
        "images_per_class": per_class,
        "budget_s_per_row": budget,
        "device": str(dev),
        "max_elements": 8192,
        "small": small,
        "memory_formats": memory_formats,
        "note": "classes/s at K=k_target; extrapolated linearly from k_used when k_used < k_target",
    }
    result = common.header(dev, settings)
    rows, skipped = [], []
    X = classes_tensor(n_classes, per_class, dev)
    for profile, decoder, exp, cfg, source in common.each_model(profiles, decoders, dev, skipped):
        model = exp.model.eval()
        for layout, bf16 in itertools.product(common.layouts(cfg, memory_formats), variants):
            common.lay_out(model, layout)
            k_used, t, est = pick_k(model, X, k_target, k_probe, budget, dev, bf16)
            decodes = k_used * n_classes * per_class
            classes_per_s = n_classes / t * (k_used / k_target)
            rows.append(
                {
                    "profile": profile,
                    "decoder": decoder,
                    "device": dev.type,
                    "variant": "bf16" if bf16 else "fp32",
                    "memory_format": layout,
                    "k_used": k_used,
                    "classes": n_classes,
                    "seconds": t,
                    "classes_per_s": classes_per_s,
                    "s_per_class": 1.0 / classes_per_s,
                    "decodes_per_s": decodes / t,
                    "extrapolated": k_used < k_target,
                    "log_p_per_image": float(est.mean()) / per_class,
                    "arch": common.arch_summary(cfg),
                }
            )
        del exp, model
    result["skipped"] = skipped
    cols = [
        "profile",
        "decoder",
        "device",
        "variant",
        "memory_format",
        "k_used",
        "classes_per_s",
        "s_per_class",
        "decodes_per_s",
        "extrapolated",
    ]
    return common.finish(
        result, NAME, out, cols, rows, title=f"log_marginal throughput (K={k_target}, {per_class} images per class)"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CI mode: short budget (K extrapolated)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument(
        "--profiles", nargs="+", default=None, help="cpu | paper | path (default: cpu on a CPU, cpu paper on CUDA)"
    )
    p.add_argument("--decoders", nargs="+", default=list(common.DECODERS), choices=common.DECODERS)
    p.add_argument("--k", type=int, default=None, help="importance samples K (default 1000)")
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--budget", type=float, default=None, help="seconds per row before K is reduced")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    common.add_memory_formats_argument(p)
    p.add_argument("--out", default=None, help=f"JSON path (default bench/results/{NAME}.json)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run(a.small, a.device, a.profiles, a.decoders, a.k, a.classes, 20, a.budget, a.out, a.memory_formats)


if __name__ == "__main__":
    main()
