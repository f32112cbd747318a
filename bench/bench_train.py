"""Benchmark 2: training throughput (images/s) and the share of step time spent loading data.

The class-structured VHE (objective vhe) with the deconv and the PixelCNN decoder, with the
architectures and batch size of a profile (``cpu``: config/cpu.yaml, ``paper``:
config/config.yaml, or a path), built by ``experiments.registry.build_experiment`` on the
background set (mirror or synthetic; the profile's data options, e.g. dihedral augmentation,
are kept). One step is what ``experiments.trainer`` does: the loader's ``next()``, then
``model.score`` (return_kl), ``float(loss)``, backward, gradient clipping, Adam. The loader's
``next()`` is timed separately from the rest (target: < 5% of step time for deconv on CPU).

On CUDA every combination of bf16 autocast and ``torch.compile`` (of the scoring function) is
measured; the compile time is reported apart (the first steps).

    python -m bench.bench_train [--small] [--device cpu|cuda] [--profiles cpu paper] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import math

import torch

from . import common

NAME = "train"
TARGET_DATA_SHARE = 0.05


def _variants(device: torch.device, compile_: bool | None, cpu_bf16: bool = False) -> list[tuple[bool, bool]]:
    """(bf16, compile) pairs to measure: on CUDA all four; on the CPU fp32, plus bf16 autocast with
    ``cpu_bf16`` (what ``train.amp_cpu`` turns on) and torch.compile with ``compile_``."""
    if device.type == "cuda":
        out = [(False, False), (True, False)]
        if compile_ is not False:
            out += [(False, True), (True, True)]
        return out
    return [(False, False)] + ([(True, False)] if cpu_bf16 else []) + ([(False, True)] if compile_ else [])


def measure(
    exp,
    device: torch.device,
    bf16: bool,
    compile_: bool,
    warmup: int,
    min_steps: int,
    min_time: float,
    max_steps: int,
    grad_clip: float | None,
    max_time: float = float("inf"),
) -> dict:
    """Time ``warmup`` untimed steps, then steps until min_steps and min_time (at most max_steps;
    past max_time seconds of timed steps, stop once 3 steps are timed)."""
    model, objective = exp.model, exp.objective
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)

    def score(inputs, sizes, target):
        return model.score(inputs, sizes, x=target, kl_factor=1.0, rescale=objective.rescale, return_kl=True)

    fn = torch.compile(score) if compile_ else score
    loader = exp.train_loader
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    def step(batch):
        with common.autocast(device, bf16):
            bound, _ = fn(batch.inputs, batch.sizes, batch.target)
        loss = -bound
        value = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
        float(norm)
        opt.step()
        return value

    t0 = common.now(device)
    for i in range(warmup):
        loss = step(next_batch())
        if i >= 1 and common.now(device) - t0 > max_time / 4:
            break
    warm_s = common.now(device) - t0
    data_t = compute_t = 0.0
    n_steps = n_images = 0
    start = common.now(device)
    while n_steps < max_steps and (n_steps < min_steps or data_t + compute_t < min_time):
        if n_steps >= 3 and data_t + compute_t >= max_time:
            break
        t0 = common.now(device)
        batch = next_batch()
        t1 = common.now(device)
        loss = step(batch)
        t2 = common.now(device)
        data_t += t1 - t0
        compute_t += t2 - t1
        n_steps += 1
        n_images += batch.target.shape[0]
    wall = common.now(device) - start
    total = data_t + compute_t
    return {
        "steps": n_steps,
        "images": n_images,
        "images_per_s": n_images / wall,
        "step_ms": 1e3 * total / n_steps,
        "data_ms": 1e3 * data_t / n_steps,
        "compute_ms": 1e3 * compute_t / n_steps,
        "data_share": data_t / total,
        "warmup_s": warm_s,
        "final_loss": loss if math.isfinite(loss) else None,
    }


def run(
    small: bool = False,
    device: str = "cpu",
    profiles=None,
    decoders=common.DECODERS,
    compile_: bool | None = None,
    min_time: float | None = None,
    max_time: float | None = None,
    out=None,
    cpu_bf16: bool = False,
    memory_formats=None,
) -> dict:
    dev = common.resolve_device(device)
    profiles = list(profiles or (["cpu"] if small and dev.type == "cpu" else ["cpu", "paper"]))
    max_time = max_time if max_time is not None else (10.0 if small else 120.0)
    warmup = 2 if small else 5
    min_steps = 3 if small else 10
    min_time = min_time if min_time is not None else (1.0 if small else 15.0)
    max_steps = 50 if small else 1000
    settings = {
        "profiles": list(profiles),
        "decoders": list(decoders),
        "objective": "vhe",
        "device": str(dev),
        "warmup_steps": warmup,
        "min_steps": min_steps,
        "min_time_s": min_time,
        "max_steps": max_steps,
        "max_time_s": max_time,
        "min_steps_within_max_time": 3,
        "target_data_share_deconv_cpu": TARGET_DATA_SHARE,
        "small": small,
        "cpu_bf16": cpu_bf16,
        "memory_formats": memory_formats,
        "step": "loader next() | score(return_kl) + float(loss) + backward + clip_grad_norm + Adam",
    }
    result = common.header(dev, settings)
    rows, skipped = [], []
    for profile, decoder, exp, cfg, source in common.each_model(profiles, decoders, dev, skipped):
        tr = cfg["model"]["train"]
        base_state = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
        for layout, (bf16, comp) in itertools.product(
            common.layouts(cfg, memory_formats), _variants(dev, compile_, cpu_bf16)
        ):
            common.lay_out(exp.model, layout)
            exp.model.load_state_dict(base_state)
            if comp:
                torch._dynamo.reset()
            variant = ("bf16" if bf16 else "fp32") + ("+compile" if comp else "")
            try:
                r = measure(exp, dev, bf16, comp, warmup, min_steps, min_time, max_steps, tr.get("grad_clip"), max_time)
            except Exception as e:  # noqa: BLE001 - e.g. torch.compile unavailable: record and go on
                print(f"[bench] {profile}/{decoder}/{variant} failed: {type(e).__name__}: {e}")
                rows.append(
                    {
                        "profile": profile,
                        "decoder": decoder,
                        "device": dev.type,
                        "variant": variant,
                        "error": f"{type(e).__name__}: {str(e)[:300]}",
                    }
                )
                continue
            row = {
                "profile": profile,
                "decoder": decoder,
                "device": dev.type,
                "variant": variant,
                "memory_format": layout,
                "batch": tr["batch_size"],
                "k_shot": tr["k_shot"],
                "dihedral": bool(cfg["data"].get("augment_dihedral")),
                **r,
                "params": common.n_params(exp.model),
                "arch": common.arch_summary(cfg),
                "data": source,
            }
            if decoder == "deconv" and dev.type == "cpu":
                row["target_met"] = r["data_share"] < TARGET_DATA_SHARE
            rows.append(row)
        del exp
    result["skipped"] = skipped
    cols = [
        "profile",
        "decoder",
        "device",
        "variant",
        "memory_format",
        "batch",
        "images_per_s",
        "step_ms",
        "data_ms",
        "data_share",
        "target_met",
        "warmup_s",
        "steps",
    ]
    return common.finish(result, NAME, out, cols, rows, title="Training throughput (images/s; data = loader next())")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CI mode: a few steps")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument(
        "--profiles",
        nargs="+",
        default=None,
        help="cpu | paper | path to a profile yaml (default: cpu paper; small on CPU: cpu)",
    )
    p.add_argument("--decoders", nargs="+", default=list(common.DECODERS), choices=common.DECODERS)
    p.add_argument(
        "--compile",
        dest="compile_",
        action="store_true",
        default=None,
        help="also measure torch.compile on CPU (always on CUDA unless --no-compile)",
    )
    p.add_argument("--no-compile", dest="compile_", action="store_false")
    p.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="on the CPU also measure bf16 autocast (the fp32 / bf16 step-time ratio the cost model prices)",
    )
    common.add_memory_formats_argument(p)
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed steps per row")
    p.add_argument("--max-time", type=float, default=None, help="cap on timed seconds per row (>= 3 steps)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help=f"JSON path (default bench/results/{NAME}.json)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run(
        a.small,
        a.device,
        a.profiles,
        a.decoders,
        a.compile_,
        a.min_time,
        a.max_time,
        a.out,
        a.cpu_bf16,
        a.memory_formats,
    )


if __name__ == "__main__":
    main()
