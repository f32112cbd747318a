"""Benchmark 6: one-shot classification of one Lake-style run (20-way, 1-shot, 20 queries) with
every estimator, scored separately (one ``class_scores`` call per estimator, as the evaluation
did before) and from shared draws (``class_scores_many``, as it does now): images the decoder
scores per run (counted, exact) and seconds per run (timed, alternating the two variants).

    python -m bench.bench_classify [--small] [--device cpu|cuda] [--k K] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

from experiments.config import evaluation_for
from vhe.evaluate import CLASSIFY_METHODS, class_scores, class_scores_many

from . import common

NAME = "classify"
WAY = 20


def lake_like_run(device) -> tuple[torch.Tensor, torch.Tensor]:
    """support (20, 1, 1, 28, 28) and query (20, 1, 28, 28) float32: two drawings of 20 background characters."""
    s, _ = common.background_set()
    sup, qry = [], []
    for c in range(WAY):
        idx = (s.character == c).nonzero().flatten()[:2]
        sup.append(s.images[idx[:1]])
        qry.append(s.images[idx[1]])
    return (
        torch.stack(sup).to(device=device, dtype=torch.float32),
        torch.stack(qry).to(device=device, dtype=torch.float32),
    )


def count_decoded(model) -> dict:
    """Count the images the model's decoder scores (wraps its forward)."""
    seen = {"images": 0}
    dec = model.decoder
    original = dec.forward

    def forward(*args, **kwargs):
        x = kwargs.get("x", args[-1] if args else None)
        if x is not None:
            seen["images"] += int(x.shape[0])
        return original(*args, **kwargs)

    dec.forward = forward
    return seen


def run(
    small: bool = False,
    device: str = "cpu",
    profiles=None,
    decoders=common.DECODERS,
    k: int | None = None,
    repeats: int | None = None,
    out=None,
) -> dict:
    dev = common.resolve_device(device)
    profiles = list(profiles or ["cpu"])
    repeats = repeats or (1 if small else 3)
    settings = {
        "profiles": profiles,
        "decoders": list(decoders),
        "k": k,
        "way": WAY,
        "shot": 1,
        "estimators": list(CLASSIFY_METHODS),
        "repeats": repeats,
        "device": str(dev),
        "small": small,
        "note": "k defaults to the profile's evaluation.classification_samples for the decoder",
    }
    result = common.header(dev, settings)
    rows, skipped = [], []
    support, query = lake_like_run(dev)
    for profile, decoder, exp, cfg, source in common.each_model(profiles, decoders, dev, skipped):
        model = exp.model.eval()
        ev = evaluation_for(cfg, decoder)
        kk = k or ev["classification_samples"]
        kk = min(kk, 2) if small else kk
        elem = ev.get("max_elements", 256)
        seen = count_decoded(model)
        times = {"separate": [], "shared": []}
        images = {}
        for _ in range(repeats):  # alternate, so both variants see the same machine load
            for variant in ("separate", "shared"):
                seen["images"] = 0
                t0 = common.now(dev)
                if variant == "separate":
                    for m in CLASSIFY_METHODS:
                        class_scores(model, support, query, method=m, n_samples=kk, max_elements=elem)
                else:
                    class_scores_many(model, support, query, CLASSIFY_METHODS, n_samples=kk, max_elements=elem)
                times[variant].append(common.now(dev) - t0)
                images[variant] = seen["images"]
        sep, sh = min(times["separate"]), min(times["shared"])
        rows.append(
            {
                "profile": profile,
                "decoder": decoder,
                "device": dev.type,
                "k": kk,
                "images_separate": images["separate"],
                "images_shared": images["shared"],
                "images_ratio": images["shared"] / images["separate"],
                "s_separate": sep,
                "s_shared": sh,
                "time_ratio": sh / sep,
                "arch": common.arch_summary(cfg),
            }
        )
        del exp, model
    result["skipped"] = skipped
    cols = [
        "profile",
        "decoder",
        "device",
        "k",
        "images_separate",
        "images_shared",
        "images_ratio",
        "s_separate",
        "s_shared",
        "time_ratio",
    ]
    return common.finish(
        result,
        NAME,
        out,
        cols,
        rows,
        title=f"one Lake-style run ({WAY}-way 1-shot), four estimators: separate vs shared draws",
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CI mode: K <= 2, one repeat")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--profiles", nargs="+", default=None, help="cpu | paper | path (default: cpu)")
    p.add_argument("--decoders", nargs="+", default=list(common.DECODERS), choices=common.DECODERS)
    p.add_argument("--k", type=int, default=None, help="samples per score (default: the profile's)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help=f"JSON path (default bench/results/{NAME}.json)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run(a.small, a.device, a.profiles, a.decoders, a.k, a.repeats, a.out)


if __name__ == "__main__":
    main()
