"""Benchmark 5: several targets per support set (``train.targets_per_class``), and CPU speed levers.

Part 1, time to a fixed validation bound. The class-structured VHE of the cpu profile (deconv and
PixelCNN decoder) is trained from the same initial weights, seed and cosine learning-rate schedule
with T = 1 (one support set per target, the seed README's loader) and with T targets per
support set, *in the same process, alternating chunks of steps*, so that both variants see the
same machine load. Every ``val_every`` steps each is scored on the same fixed validation batches
(one target per support set, kl_factor 1). Recorded per variant: targets/s (training steps only),
the validation curve against cumulative training time, and the training time at which the
validation bound first reaches the *fixed target* = the T = 1 run's bound at its last validation.

A third deconv variant adds bf16 autocast on the CPU (the fastest lever of part 2), to see whether
it also reaches the bound sooner; a last one trains T > 1 for twice the steps (the cosine schedule
over its own length: one T = 4 step costs less than half a T = 1 step). Part 2, CPU levers on the deconv model at the profile's T: fp32 (reference), channels_last,
bf16 autocast on the CPU, ``torch.compile`` of the scoring function, and 2 intra-op threads instead
of 1; targets/s each, measured in turn.

    python -m bench.bench_targets [--small] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import torch

from . import common

NAME = "targets"
TARGET_SPEEDUP = 2.0  # targets/s, deconv, T vs 1
TARGET_TIME_RATIO = 1.5  # wall-clock to the T = 1 bound, deconv


def _variant_exp(cfg: dict, device, T: int, batch: int):
    from experiments.registry import build_experiment

    c = copy.deepcopy(cfg)
    c["model"]["train"].update(targets_per_class=T, batch_size=batch)
    torch.manual_seed(0)
    return build_experiment(c, device)


class _Run:
    """One variant: its model, optimiser, schedule, loader iterator and the measurements."""

    def __init__(self, name, exp, init_state, tr, max_steps):
        from experiments.trainer import lr_lambda

        self.name, self.exp = name, exp
        exp.model.load_state_dict(init_state)
        exp.model.train()
        self.opt = torch.optim.Adam(exp.model.parameters(), lr=float(tr["lr"]))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda({**tr, "max_steps": max_steps}))
        self.clip = tr.get("grad_clip") or float("inf")
        self.it = iter(exp.train_loader)
        self.step, self.time, self.targets = 0, 0.0, 0
        self.curve: list[dict] = []

    def batch(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.exp.train_loader)
            return next(self.it)

    def train(self, n: int, autocast=contextlib.nullcontext, score=None):
        m, rescale = self.exp.model, self.exp.objective.rescale
        score = score or (lambda b: m.score(b.inputs, b.sizes, x=b.target, rescale=rescale))
        for _ in range(n):
            t0 = time.perf_counter()
            b = self.batch()
            with autocast():
                loss = -score(b)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), self.clip)
            self.opt.step()
            self.sched.step()
            self.time += time.perf_counter() - t0
            self.step += 1
            self.targets += len(b.target)

    @torch.no_grad()
    def validate(self, batches, seed=7919):
        m = self.exp.model
        m.eval()
        total = count = 0.0
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for b in batches:
                total += float(
                    m.score(b.inputs, b.sizes, x=b.target, rescale=self.exp.objective.rescale, reduction="sum")
                )
                count += len(b.target)
        m.train()
        self.curve.append({"step": self.step, "train_time_s": round(self.time, 3), "val_bound": total / count})


def time_to_bound(curve: list[dict], target: float) -> float | None:
    """Training time (s) of the first validation whose bound reaches ``target`` (None: never)."""
    return next((p["train_time_s"] for p in curve if p["val_bound"] >= target - 1e-9), None)


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def race(cfg, device, variants, max_steps, val_every, val_batches, chunk=25) -> list[dict]:
    """Train every (name, T, batch, bf16[, steps multiplier]) variant alternately; one row each.

    A variant runs ``max_steps`` steps (times its multiplier, default 1) under the cosine schedule
    over its own length; the first variant (T = 1) sets the target bound.
    """
    variants = [tuple(v) + (1,) * (5 - len(v)) for v in variants]
    exps = [(name, _variant_exp(cfg, device, T, batch), T, batch) for name, T, batch, _, _ in variants]
    casts = [_bf16 if bf16 else contextlib.nullcontext for _, _, _, bf16, _ in variants]
    lengths = [int(max_steps * mult) for *_, mult in variants]
    init = {k: v.detach().clone() for k, v in exps[0][1].model.state_dict().items()}
    vl = exps[0][1].val_loader
    batches = [vl.sample() for _ in range(val_batches)]
    tr = cfg["model"]["train"]
    runs = [_Run(name, exp, init, tr, n) for (name, exp, _, _), n in zip(exps, lengths)]
    for r in runs:
        r.validate(batches)
    while any(r.step < n for r, n in zip(runs, lengths)):
        for r, cast, length in zip(runs, casts, lengths):
            if r.step >= length:
                continue
            n = min(chunk, length - r.step)
            before = r.step
            r.train(n, cast)
            if r.step // val_every > before // val_every or r.step == length:
                r.validate(batches)
        print(
            f"[bench] step {max(r.step for r in runs)}/{max(lengths)}: "
            + ", ".join(f"{r.name} {r.curve[-1]['val_bound']:.2f} ({r.time:.0f} s)" for r in runs),
            flush=True,
        )
    target = runs[0].curve[-1]["val_bound"]
    common_target = min(r.curve[-1]["val_bound"] for r in runs)  # a bound every variant reaches
    rows = []
    for r, (_, _, T, batch), (_, _, _, bf16, _) in zip(runs, exps, variants):
        t = time_to_bound(r.curve, target)
        rows.append(
            {
                "variant": r.name,
                "T": T,
                "batch": batch,
                "bf16": bf16,
                "steps": r.step,
                "targets_per_s": r.targets / r.time,
                "final_val_bound": r.curve[-1]["val_bound"],
                "target_bound": target,
                "time_to_target_s": t,
                "common_bound": common_target,
                "time_to_common_bound_s": time_to_bound(r.curve, common_target),
                "curve": r.curve,
            }
        )
    base = rows[0]
    for row in rows:
        row["speedup_targets_per_s"] = row["targets_per_s"] / base["targets_per_s"]
        t = row["time_to_target_s"]
        row["time_ratio_to_target"] = (base["time_to_target_s"] / t) if t else None
        tc = row["time_to_common_bound_s"]
        row["time_ratio_to_common_bound"] = (base["time_to_common_bound_s"] / tc) if tc else None
    return rows


def levers(cfg, device, steps: int, T: int, compile_: bool = True) -> list[dict]:
    """targets/s of the deconv model at T under each CPU lever (measured one after another)."""
    exp = _variant_exp(cfg, device, T, cfg["model"]["train"]["batch_size"])
    init = {k: v.detach().clone() for k, v in exp.model.state_dict().items()}
    tr = cfg["model"]["train"]
    m, rescale = exp.model, exp.objective.rescale
    out = []
    threads = torch.get_num_threads()

    def plain(b):
        return m.score(b.inputs, b.sizes, x=b.target, rescale=rescale)

    def channels_last(b):
        inputs = {
            k: (v.flatten(0, 1).contiguous(memory_format=torch.channels_last).view_as(v) if v.dim() == 5 else v)
            for k, v in b.inputs.items()
        }
        return m.score(inputs, b.sizes, x=b.target.contiguous(memory_format=torch.channels_last), rescale=rescale)

    cases = [
        ("fp32 (reference)", None, contextlib.nullcontext, plain, 1),
        ("channels_last", "channels_last", contextlib.nullcontext, channels_last, 1),
        ("bf16 autocast (CPU)", None, _bf16, plain, 1),
        ("torch.compile", None, contextlib.nullcontext, "compile", 1),
        ("2 threads", None, contextlib.nullcontext, plain, 2),
    ]
    if not compile_:
        cases = [c for c in cases if c[3] != "compile"]
    for name, fmt, autocast, score, n_threads in cases:
        m.load_state_dict(init)
        if fmt == "channels_last":
            m.to(memory_format=torch.channels_last)
        else:
            m.to(memory_format=torch.contiguous_format)
        torch.set_num_threads(n_threads)
        row = {"lever": name, "T": T, "threads": n_threads}
        try:
            fn = score
            t_compile = None
            if score == "compile":
                torch._dynamo.reset()
                fn = torch.compile(plain)
            r = _Run(name, exp, init, tr, steps + 3)
            t0 = time.perf_counter()
            r.train(3, autocast, fn)  # warm-up (and compilation)
            if score == "compile":
                t_compile = time.perf_counter() - t0
            r.time, r.targets = 0.0, 0
            r.train(steps, autocast, fn)
            row.update(targets_per_s=r.targets / r.time, warmup_s=t_compile)
        except Exception as e:  # noqa: BLE001 - a lever that fails on this machine is recorded, not fatal
            row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        finally:
            torch.set_num_threads(threads)
        out.append(row)
        print(f"[bench] lever {name}: {row.get('targets_per_s', row.get('error'))}", flush=True)
    m.to(memory_format=torch.contiguous_format)
    ref = out[0].get("targets_per_s")
    for row in out:
        row["vs_reference"] = row["targets_per_s"] / ref if ref and row.get("targets_per_s") else None
    return out


def run(
    small: bool = False,
    device: str = "cpu",
    out=None,
    profiles=None,
    decoders=("deconv", "pixelcnn"),
    with_levers: bool = True,
    only_longer: bool = False,
) -> dict:
    dev = common.resolve_device(device)
    torch.set_num_threads(1)
    settings = {
        "small": small,
        "device": str(dev),
        "profile": "cpu",
        "objective": "vhe",
        "schedule": "cosine over max_steps (same for every variant)",
        "seed": 0,
        "threads": 1,
        "chunk_steps": 25,
        "fixed_target": "the T = 1 run's validation bound at its last validation",
    }
    result = common.header(dev, settings)
    rows = []
    plans = {"deconv": (40, 20, 2) if small else (2000, 250, 10), "pixelcnn": (10, 10, 1) if small else (600, 100, 10)}
    for decoder, (max_steps, val_every, val_batches) in plans.items():
        if decoder not in decoders:
            continue
        exp, cfg, source = common.build("cpu", decoder, dev)
        T = int(cfg["model"]["train"]["targets_per_class"])
        T = T if T > 1 else 4
        variants = [("T=1, batch 32", 1, 32, False), (f"T={T}, batch 32", T, 32, False)]
        if decoder == "deconv":
            variants.append((f"T={T}, batch 32, bf16 autocast", T, 32, True))
        # the same cosine shape over twice the steps: T > 1 steps are cheaper, so at equal time it sees more
        variants.append((f"T={T}, batch 32, 2x steps", T, 32, False, 2))
        if only_longer:
            variants = [variants[0], variants[-1]]
        for row in race(cfg, dev, variants, max_steps, val_every, val_batches):
            row.update(decoder=decoder, data=source)
            rows.append(row)
        if decoder == "deconv" and with_levers:
            result["levers"] = levers(cfg, dev, 5 if small else 40, T, compile_=not small)  # compiling: ~1 min
    deconv = [r for r in rows if r["decoder"] == "deconv" and r["T"] > 1 and not r["bf16"]]
    deconv = sorted(deconv, key=lambda r: r["time_ratio_to_target"] or 0, reverse=True)  # the best T > 1 setting
    if deconv:
        d = deconv[0]
        result["targets"] = {
            "speedup_targets_per_s": d["speedup_targets_per_s"],
            "speedup_target": TARGET_SPEEDUP,
            "time_ratio_to_bound": d["time_ratio_to_target"],
            "time_ratio_target": TARGET_TIME_RATIO,
            "met": bool(
                d["speedup_targets_per_s"] >= TARGET_SPEEDUP and (d["time_ratio_to_target"] or 0) >= TARGET_TIME_RATIO
            ),
        }
    cols = [
        "decoder",
        "variant",
        "steps",
        "targets_per_s",
        "speedup_targets_per_s",
        "final_val_bound",
        "target_bound",
        "time_to_target_s",
        "time_ratio_to_target",
    ]
    res = common.finish(result, NAME, out, cols, rows, "Several targets per support set (cpu profile, 1 thread)")
    print(
        common.format_table(
            result.get("levers", []),
            ["lever", "threads", "targets_per_s", "vs_reference", "warmup_s", "error"],
            title="CPU levers (deconv)",
        )
    )
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_targets", description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a few steps (CI)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--decoders", nargs="+", default=["deconv", "pixelcnn"], choices=["deconv", "pixelcnn"])
    ap.add_argument("--no-levers", action="store_true", help="skip part 2")
    ap.add_argument("--only-longer", action="store_true", help="part 1 with T = 1 and the 2x-steps variant only")
    args = ap.parse_args(argv)
    run(
        small=args.small,
        device=args.device,
        out=args.out,
        decoders=args.decoders,
        with_levers=not args.no_levers,
        only_longer=args.only_longer,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
