"""Benchmark 1: episode sampling throughput, ``vhe.DataLoader`` vs the per-element baseline.

On the background set (train_small.npz from the mirror, else a synthetic set of the same
size, 19,280 x 28 x 28 in 964 classes): latents c (character, k_shot 5) and z (the image
itself, k_shot 1), VHE episodes (resample), images returned as float32 as in training.
Measures episodes/s of iterating ``vhe.DataLoader`` and ``bench.naive_loader.NaiveDataLoader``
(one ``np.random.choice`` per element per latent, numpy stacking) for each batch size, and
the speedup (target >= 10x). Before timing, checks that both give the same kind of output:
shapes, dtypes, class sizes, labels, and every support image drawn from the target's class.

    python -m bench.bench_loader [--small] [--device cpu|cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import vhe

from . import common
from .naive_loader import NaiveDataLoader

NAME = "loader"
TARGET_SPEEDUP = 10.0


def make_loaders(s, batch_size: int, k_shot: int, device: torch.device, seed: int = 0):
    labels = {"c": s.character, "z": torch.arange(len(s))}
    ks = {"c": k_shot, "z": 1}
    fast = vhe.DataLoader(
        s.images,
        labels=labels,
        k_shot=ks,
        batch_size=batch_size,
        resample=True,
        shuffle=True,
        drop_last=True,
        seed=seed,
        device=device,
        dtype=torch.float32,
    )
    naive = NaiveDataLoader(
        s.images,
        labels=labels,
        k_shot=ks,
        batch_size=batch_size,
        resample=True,
        shuffle=True,
        drop_last=True,
        seed=seed,
        dtype=torch.float32,
        device=device if device.type != "cpu" else None,
    )
    return fast, naive


def _class_lookup(s) -> dict[bytes, set[int]]:
    """Image bytes -> the classes containing that exact image."""
    flat = s.images.reshape(len(s), -1).numpy()
    out: dict[bytes, set[int]] = {}
    for img, c in zip(flat, s.character.tolist()):
        out.setdefault(img.tobytes(), set()).add(c)
    return out


def check_same_output(s, fast, naive, lookup=None) -> dict:
    """Both loaders give the same kind of batch: shapes, dtypes, sizes, labels, supports from the class."""
    lookup = lookup if lookup is not None else _class_lookup(s)
    counts = torch.bincount(s.character)

    def in_class(images: torch.Tensor, cls: torch.Tensor) -> bool:
        imgs = images.to("cpu", torch.uint8).reshape(images.shape[0], images.shape[1], -1).numpy()
        return all(int(c) in lookup.get(row.tobytes(), ()) for sup, c in zip(imgs, cls.tolist()) for row in sup)

    checks = {}
    batches = {"vhe": next(iter(fast)), "naive": next(iter(naive))}
    for name, b in batches.items():
        cls = s.character[b.index.cpu()]
        checks[f"{name}_target_is_data[index]"] = bool(
            torch.equal(b.target.cpu().to(torch.uint8), s.images[b.index.cpu()])
        )
        checks[f"{name}_labels_c_are_classes"] = bool(torch.equal(b.labels["c"].cpu(), cls))
        checks[f"{name}_sizes_c_are_class_sizes"] = bool(torch.equal(b.sizes["c"].cpu(), counts[cls].float()))
        checks[f"{name}_sizes_z_are_1"] = bool((b.sizes["z"] == 1).all())
        checks[f"{name}_support_c_from_target_class"] = in_class(b.inputs["c"], cls)
        checks[f"{name}_support_z_is_target"] = bool(torch.equal(b.inputs["z"][:, 0], b.target))
    if naive.last_support:
        sup = torch.as_tensor(naive.last_support["c"])
        checks["naive_support_c_distinct"] = all(len(set(r.tolist())) == len(r) for r in sup)
    a, b = batches["vhe"], batches["naive"]
    same = {
        "inputs": {k: (tuple(a.inputs[k].shape), str(a.inputs[k].dtype)) for k in a.inputs}
        == {k: (tuple(b.inputs[k].shape), str(b.inputs[k].dtype)) for k in b.inputs},
        "target": (tuple(a.target.shape), a.target.dtype) == (tuple(b.target.shape), b.target.dtype),
        "sizes": {k: (tuple(v.shape), v.dtype) for k, v in a.sizes.items()}
        == {k: (tuple(v.shape), v.dtype) for k, v in b.sizes.items()},
        "labels": {k: (tuple(v.shape), v.dtype) for k, v in a.labels.items()}
        == {k: (tuple(v.shape), v.dtype) for k, v in b.labels.items()},
        "index": (tuple(a.index.shape), a.index.dtype) == (tuple(b.index.shape), b.index.dtype),
    }
    checks.update({f"same_{k}_shape_dtype": v for k, v in same.items()})
    checks["shapes"] = {k: list(v.shape) for k, v in a.inputs.items()} | {"target": list(a.target.shape)}
    return checks


def episodes_per_s(loader, device: torch.device, min_time: float, min_batches: int = 3) -> tuple[float, int]:
    """Iterate (over epochs as needed) for at least ``min_time`` s; episodes/s and batches timed."""
    it = iter(loader)
    next(it)  # warm-up (first permutation, allocations)
    n_batches, n_eps = 0, 0
    t0 = common.now(device)
    while True:
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        n_batches += 1
        n_eps += b.target.shape[0]
        if n_batches >= min_batches:
            t = common.now(device) - t0
            if t >= min_time:
                return n_eps / t, n_batches


def run(
    small: bool = False,
    device: str = "cpu",
    batch_sizes=(32, 128),
    k_shot: int = 5,
    min_time: float | None = None,
    repeats: int | None = None,
    threads=None,
    out=None,
) -> dict:
    dev = common.resolve_device(device)
    default_threads = torch.get_num_threads()
    threads = list(threads or ([default_threads, 1] if default_threads > 1 else [1]))
    min_time = min_time if min_time is not None else (0.5 if small else 3.0)
    repeats = repeats if repeats is not None else (1 if small else 3)
    s, source = common.background_set()
    devices = [torch.device("cpu")] + ([dev] if dev.type != "cpu" else [])
    settings = {
        "data": source,
        "n_images": len(s),
        "n_classes": int(s.n_classes),
        "batch_sizes": list(batch_sizes),
        "k_shot": {"c": k_shot, "z": 1},
        "resample": True,
        "dtype": "float32",
        "min_time_s": min_time,
        "repeats": repeats,
        "statistic": "median over repeats",
        "devices": [str(d) for d in devices],
        "torch_threads": threads,
        "target_speedup": TARGET_SPEEDUP,
        "small": small,
    }
    result = common.header(dev, settings)
    lookup = _class_lookup(s)
    rows, checks = [], {}
    for d in devices:
        for bs in batch_sizes:
            fast, naive = make_loaders(s, bs, k_shot, d)
            c = check_same_output(s, fast, naive, lookup)
            checks[f"{d.type}/batch{bs}"] = c
            ok = all(v for k, v in c.items() if k != "shapes")
            if not ok:
                bad = [k for k, v in c.items() if k != "shapes" and not v]
                raise AssertionError(f"loader outputs disagree ({d}, batch {bs}): {bad}")
            for th in threads if d.type == "cpu" else [default_threads]:
                torch.set_num_threads(th)
                try:
                    speeds = {"vhe": [], "naive": []}
                    for _ in range(repeats):  # interleave, so both see the same machine load
                        speeds["vhe"].append(episodes_per_s(fast, d, min_time)[0])
                        speeds["naive"].append(episodes_per_s(naive, d, min_time)[0])
                finally:
                    torch.set_num_threads(default_threads)
                v, nv = statistics.median(speeds["vhe"]), statistics.median(speeds["naive"])
                rows.append(
                    {
                        "device": d.type,
                        "threads": th,
                        "batch": bs,
                        "vhe_eps_per_s": v,
                        "naive_eps_per_s": nv,
                        "speedup": v / nv,
                        "target_met": v / nv >= TARGET_SPEEDUP,
                        "vhe_all": speeds["vhe"],
                        "naive_all": speeds["naive"],
                        "outputs_match": ok,
                    }
                )
    result["checks"] = checks
    cols = ["device", "threads", "batch", "vhe_eps_per_s", "naive_eps_per_s", "speedup", "target_met", "outputs_match"]
    return common.finish(
        result, NAME, out, cols, rows, title=f"Episode sampling (episodes/s, k_shot c=5 z=1, {source})"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CI mode: short timings")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (cuda also times the loader on the GPU)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument("--k-shot", type=int, default=5)
    p.add_argument("--min-time", type=float, default=None, help="seconds per measurement")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=None,
        help="torch thread counts to measure on CPU (default: torch's default and 1)",
    )
    p.add_argument("--out", default=None, help=f"JSON path (default bench/results/{NAME}.json)")
    a = p.parse_args(argv)
    run(a.small, a.device, a.batch_sizes, a.k_shot, a.min_time, a.repeats, a.threads, a.out)


if __name__ == "__main__":
    main()
