#!/usr/bin/env python
"""Measure a profile on one GPU: the rates the cost model prices GPU jobs with (issue 31).

    make gpu-check                                    # = vhe-gpu-check = python -m pipeline.gpu_check
    python -m pipeline.gpu_check --config config/config.yaml --out results/gpu_check/gpu_rates.json
    python -m pipeline.gpu_check --tiny --device cpu --out /tmp/gpu_rates.json   # seconds, on a CPU

For every model of the config (default config/config.yaml, the paper profile), in order:

* build it as training does: ``experiments.trainer.Trainer`` (``experiments.registry.build_experiment``)
  on the run's prepared data (``paths.background``, ``paths.textured``), or where that is absent on
  bench.common's stand-in of the same shapes (``bench.common.background_set``: the data mirror's
  background set, else a synthetic 964 x 20 one) and, for the factorial model, a textured set
  rendered from it with ``textures.n_textures`` procedural textures;
* train it with the Trainer's own step (the next batch, autocast per ``train.amp``, Adam,
  clipping, the learning-rate schedule): ``--warmup`` steps, then up to ``--steps`` timed steps,
  each timed between ``torch.cuda.synchronize`` calls: step and data time, images/s, peak memory
  (``torch.cuda.max_memory_allocated``; null on a CPU) and the bound (nats per image, the
  training step's) at the first step and over the last timed steps.

Then per decoder, on the class model with that decoder (``vhe_<decoder>`` first; else a VAE): the
decode rate of ``vhe.evaluate.log_marginal`` at K = 1000 with the config's
``evaluation.max_elements``, on ``--classes`` classes of 20 images (``bench.bench_eval.pick_k``:
where K = 1000 does not fit the decoder's share, a smaller K is timed and the time extrapolated
linearly in K; decodes/s do not depend on K); with time to spare also at max_elements 8192.

Budget: ``--budget-s`` (default 420 s, so the whole command fits in 8 minutes on one GPU with
start-up) is split as it goes: 85% for training, shared evenly among the models not yet
measured (what one leaves goes to the next; a model's build counts), and 15% for the decode
rates, shared among the decoders. It is checked before every build and every step: once spent,
the check stops, writes what it measured (``complete: false``, ``stopped``: why), prints the
projection and exits 3; the cost model guesses what is missing. A model that fails (e.g. out of
memory) is recorded with its ``error`` and the check goes on.

``--tiny`` shrinks networks, batch, steps, K, classes, data (60 characters of bench.common's set,
never the run's files) and
the budget (20 s) so that the whole command runs on a CPU in seconds (tests/pipeline/test_gpu_check.py).

The JSON (``--out``, default results/gpu_check/gpu_rates.json)::

    {"format": "vhe.gpu_rates", "version": 1, "date", "device", "device_name", "torch", "cuda",
     "git_commit", "machine" (bench.common.machine_info), "config", "run", "tiny", "settings",
     "data": {"background", "textured"}, "elapsed_s", "complete", "stopped",
     "models": {name: {"experiment", "objective", "decoder", "signature" (cost.model_signature:
        what the rate is valid for), "batch_size", "bf16", "params", "data", "build_s",
        "warmup_steps", "steps", "images", "step_ms", "data_ms", "images_per_s",
        "peak_memory_mb", "bound_start", "bound_end", "share_s", "seconds"} or {..., "error"}},
     "decoders": {decoder: {"model", "nets", "max_elements", "k_target", "k_used", "classes",
        "images_per_class", "seconds", "decodes_per_s", "s_per_class" (at k_target),
        "extrapolated", "peak_memory_mb", "log_p_per_image", "alternatives": [{"max_elements",
        "k_used", "decodes_per_s"}]}},
     "projection": {"assumption", "wall_s", "train_s", "eval_s", "n_measured",
        "models": {name: {"train_s", "eval_s", "train_images_per_s", "decodes_per_s",
        "train_source", "eval_source"}}}}

The cost model (pipeline/cost.py, assumption 8) prices a model's GPU jobs from this file where
its entry matches the config; ``vhe-estimate --gpu`` and the rules' runtime resources read it
from ``pipeline/gpu_rates.json`` (``$VHE_GPU_RATES`` or ``--gpu-rates`` name another). Once
measured on a real GPU, commit the file there and add a dated note to docs/results/log.md.
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from pipeline import cost

ROOT = Path(__file__).resolve().parent.parent  # the checkout (bench/ is not an installed package)
DEFAULT_CONFIG = "config/config.yaml"
DEFAULT_OUT = "results/gpu_check/gpu_rates.json"
DEFAULT_BUDGET_S, TINY_BUDGET_S = 420.0, 20.0
TRAIN_SHARE = 0.85  # of the budget; the rest for the decode rates
MIN_STEPS = 3  # timed steps a model gets even past its share (not past the budget)
PER_CLASS = 20  # images per class of log p(X) (an Omniglot character's drawings)
BIG_CHUNK = 8192  # the alternative max_elements measured with time to spare
EXIT_INCOMPLETE = 3
#: what --tiny changes in the config (the models' own nets/train overrides are dropped, but for nets.family)
TINY = {
    "data": {"max_characters": 60},
    "textures": {"source": "procedural", "n_textures": 4, "n_per_character": 4},
    "nets": {
        "c_dim": 8,
        "z_dim": 4,
        "a_dim": 8,
        "t_dim": 8,
        "hidden": 32,
        "conv_channels": 8,
        "conv_layers": 2,
        "deconv_channels": 8,
        "pixelcnn": {"n_layers": 2, "channels": 8, "kernel_size": 3, "cond_channels": 4},
    },
    "train": {
        "batch_size": 8,
        "max_steps": 200,
        "val_batches": 2,
        "one_shot_curve": {"every": 100, "n_runs": 2, "n_way": 3, "method": "conditional", "n_samples": 2},
    },
    "evaluation": {
        "n_samples": 20,
        "max_classes": 5,
        "classification_samples": 2,
        "max_runs": 1,
        "within_alphabet_runs": 1,
        "validation_runs": {"n_runs": 2, "n_way": 3},
    },
}
#: measurement settings: (warm-up steps, timed steps, K, K of the probe, classes)
FULL_SETTINGS = {"warmup": 10, "steps": 300, "k": 1000, "k_probe": 5, "classes": 4}
TINY_SETTINGS = {"warmup": 1, "steps": 5, "k": 10, "k_probe": 2, "classes": 1}


def _bench():
    """(bench.common, bench.bench_eval); bench/ is imported from the checkout when it is not on sys.path."""
    try:
        from bench import bench_eval, common
    except ImportError:
        if not (ROOT / "bench" / "common.py").is_file():
            raise SystemExit(
                "vhe-gpu-check needs the checkout (it builds the models with bench/common.py): run it "
                "from a clone of the repository, `make gpu-check`"
            ) from None
        sys.path.insert(0, str(ROOT))
        from bench import bench_eval, common
    return common, bench_eval


def tiny_config(cfg: dict) -> dict:
    """``cfg`` (resolved) shrunk by :data:`TINY`: the same models, tiny networks, batch, steps, K and data."""
    from experiments.config import deep_merge, load_config

    out = deep_merge(cfg, TINY)
    out["models"] = {n: {k: v for k, v in e.items() if k not in ("nets", "train")} for n, e in cfg["models"].items()}
    for n, e in cfg["models"].items():  # a model's network family is kept (the spatial family at its default sizes)
        if "family" in (e.get("nets") or {}):
            out["models"][n]["nets"] = {"family": e["nets"]["family"]}
    return load_config(out)


class Budget:
    """Seconds left of ``total`` since construction (time.perf_counter)."""

    def __init__(self, total: float):
        self.total, self.start = float(total), time.perf_counter()
        self.deadline = self.start + self.total

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def over(self) -> bool:
        return self.left() <= 0


# ----------------------------------------------------------------------- data
def prepare_data(cfg: dict, tmp: Path, synthetic: bool) -> tuple[dict, dict]:
    """({"background", "textured"}: data files that exist, their sources): the run's prepared files
    (``paths``) unless ``synthetic`` or absent, else bench.common's background set (and a textured
    set rendered from it) saved under ``tmp``."""
    common, _ = _bench()
    paths, sources = {k: cfg["paths"][k] for k in ("background", "textured")}, {}
    if not synthetic and Path(paths["background"]).is_file():
        sources["background"] = paths["background"]
    else:
        s, sources["background"] = common.background_set()
        paths["background"] = str(s.save(tmp / "background.pt"))
    if any(e.get("experiment") == "factorial" for e in cfg["models"].values()):
        if not synthetic and Path(paths["textured"]).is_file():
            sources["textured"] = paths["textured"]
        else:
            from vhe.data.textures import procedural_textures, textured_omniglot

            s, src = common.background_set()
            s = s.first_characters(cfg["data"].get("max_characters"))
            tx = cfg["textures"]
            tiles, names = procedural_textures(int(tx["n_textures"]), return_names=True)
            t = textured_omniglot(s, tiles, int(tx["n_per_character"]), seed=int(cfg["seed"]), texture_names=names)
            paths["textured"] = str(t.save(tmp / "textured.pt"))
            sources["textured"] = (
                f"{src}, {s.n_classes} characters x {tx['n_per_character']} images in "
                f"{tx['n_textures']} procedural textures"
            )
    return paths, sources


# ----------------------------------------------------------------------- measurements
def _peak_mb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train_model(
    cfg: dict,
    name: str,
    device,
    tmp: Path,
    share_s: float,
    budget: Budget,
    warmup: int,
    steps: int,
    data_paths: dict,
    data: str,
):
    """Build model ``name`` (``build_experiment`` on ``data_paths``, seeded as the Trainer seeds)
    into a Trainer and time its training steps -> (entry, trainer).

    Warm-up: ``warmup`` steps, at most a quarter of ``share_s``; then timed steps until ``steps``,
    or ``share_s`` is spent (after :data:`MIN_STEPS`), or the budget is (at once)."""
    import torch

    from experiments.config import model_config
    from experiments.registry import build_experiment
    from experiments.trainer import Trainer

    common, _ = _bench()
    t_start = time.perf_counter()
    end = t_start + share_s
    mcfg = model_config(cfg, name)
    mcfg["device"] = str(device)
    m = mcfg["model"]
    entry = {
        "experiment": m["experiment"],
        "objective": m.get("objective"),
        "decoder": m["decoder"],
        "signature": cost.model_signature(m),
        "batch_size": int(m["train"]["batch_size"]),
        "data": data,
        "share_s": share_s,
    }
    _reset_peak(device)
    # the data files may lie outside the checkout, where the config's schema refuses paths: the
    # experiment is built from a copy pointing at them (as bench.common.build does), the Trainer
    # gets the config as it is
    built = copy.deepcopy(mcfg)
    built["paths"].update(data_paths)
    torch.manual_seed(int(mcfg["seed"]))
    exp = build_experiment(built, device)
    trainer = Trainer(mcfg, tmp / "checkpoints" / name, experiment=exp, device=device, wandb_mode="disabled")
    entry.update(
        bf16=bool(trainer.use_amp or trainer.use_amp_cpu),
        params=sum(p.numel() for p in trainer.model.parameters()),
        build_s=time.perf_counter() - t_start,
    )
    trainer.model.train()
    trainer._it = iter(trainer.exp.train_loader)

    def step():
        t0 = common.now(device)
        batch = trainer._next_batch()
        t1 = common.now(device)
        stats = trainer._optimise(batch)
        t2 = common.now(device)
        trainer.state.step += 1
        return stats, len(batch.target), t1 - t0, t2 - t1

    bounds, n_warm = [], 0
    while n_warm < warmup and not budget.over():
        stats, *_ = step()
        bounds.append(stats["bound"])
        n_warm += 1
        if time.perf_counter() - t_start > share_s / 4:
            break
    n = images = 0
    data_t = compute_t = 0.0
    timed = []
    while n < steps and not budget.over() and (n < MIN_STEPS or time.perf_counter() < end):
        stats, k, dt, ct = step()
        bounds.append(stats["bound"])
        timed.append(stats["bound"])
        n, images, data_t, compute_t = n + 1, images + k, data_t + dt, compute_t + ct
    total = data_t + compute_t
    last = timed[-10:]
    entry.update(
        warmup_steps=n_warm,
        steps=n,
        images=images,
        step_ms=1e3 * total / n if n else None,
        data_ms=1e3 * data_t / n if n else None,
        images_per_s=images / total if n and total > 0 else None,
        peak_memory_mb=_peak_mb(device),
        bound_start=bounds[0] if bounds else None,
        bound_end=sum(last) / len(last) if last else None,
        bound_end_steps=len(last),
        seconds=time.perf_counter() - t_start,
    )
    if n < MIN_STEPS:
        entry["note"] = f"only {n} timed step(s): the budget ran out"
    return entry, trainer


def measure_decodes(
    model, nets: dict, name: str, device, X, k: int, k_probe: int, max_elements: int, share_s: float, budget: Budget
) -> dict:
    """The decode rate of log_marginal on ``X`` (classes x 20 images) at K = ``k`` (bench_eval.pick_k)
    with ``max_elements``; with time to spare also at :data:`BIG_CHUNK`."""
    _, bench_eval = _bench()
    t_start = time.perf_counter()
    n_classes, per_class = X.shape[:2]

    def one(elements: int, seconds: float) -> dict:
        k_used, t, est = bench_eval.pick_k(model, X, k, k_probe, max(seconds, 1e-3), device, False, elements)
        return {
            "max_elements": elements,
            "k_used": k_used,
            "seconds": t,
            "decodes_per_s": k_used * n_classes * per_class / t,
            "extrapolated": k_used < k,
            "s_per_class": t / n_classes * k / k_used,
            "log_p_per_image": float(est.mean()) / per_class,
        }

    model.eval()
    _reset_peak(device)
    # pick_k: a probe at k_probe, then the largest K whose time fits; half the share for it, half spare
    main = one(max_elements, min(share_s, budget.left()) / 2)
    entry = {
        "model": name,
        "nets": nets,
        "k_target": k,
        "classes": int(n_classes),
        "images_per_class": int(per_class),
        **main,
        "peak_memory_mb": _peak_mb(device),
        "alternatives": [],
    }
    left = min(t_start + share_s, budget.deadline) - time.perf_counter()
    if max_elements != BIG_CHUNK and left > 2 * main["seconds"]:
        alt = one(BIG_CHUNK, left / 2)
        entry["alternatives"].append(
            {k2: alt[k2] for k2 in ("max_elements", "k_used", "decodes_per_s", "extrapolated")}
        )
    return entry


def decoder_models(cfg: dict) -> dict:
    """{decoder: the model whose decode rate is measured}: vhe_<decoder>, else a class model, else a VAE."""
    out = {}
    for rank in (
        lambda e: e.get("experiment") == "class" and e.get("objective") == "vhe",
        lambda e: e.get("experiment") == "class",
        lambda e: e.get("experiment") == "vae",
    ):
        for name, e in cfg["models"].items():
            if rank(e) and e.get("decoder") not in out:
                out[e["decoder"]] = name
    return out


# ----------------------------------------------------------------------- the check
def run(
    config=DEFAULT_CONFIG,
    out=DEFAULT_OUT,
    device: str = "auto",
    budget_s: float | None = None,
    tiny: bool = False,
    models=None,
    steps: int | None = None,
    warmup: int | None = None,
    k: int | None = None,
    classes: int | None = None,
    threads: int | None = None,
    log=print,
) -> dict:
    """Measure, write the JSON to ``out`` and return it (see the module docstring). ``threads``:
    torch threads meanwhile (default: torch's; 1 with ``tiny`` on a CPU, as the pipeline's CPU jobs)."""
    import torch

    before = torch.get_num_threads()
    common, _ = _bench()
    if threads is None and tiny and common.resolve_device(device).type == "cpu":
        threads = 1
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _run(config, out, device, budget_s, tiny, models, steps, warmup, k, classes, log)
    finally:
        torch.set_num_threads(before)


def _run(config, out, device, budget_s, tiny, models, steps, warmup, k, classes, log) -> dict:
    import torch

    from experiments.config import load_config, evaluation_for, model_config

    common, bench_eval = _bench()
    budget = Budget(budget_s if budget_s is not None else (TINY_BUDGET_S if tiny else DEFAULT_BUDGET_S))
    dev = common.resolve_device(device)
    if dev.type != "cuda" and not tiny:
        log("gpu-check: measuring on the CPU: these are not GPU rates (do not commit them as pipeline/gpu_rates.json)")
    cfg = load_config(config)
    if tiny:
        cfg = tiny_config(cfg)
    full = copy.deepcopy(cfg)  # the projection prices every model of the profile
    names = list(models or cfg["models"])
    unknown = [n for n in names if n not in cfg["models"]]
    if unknown:
        raise SystemExit(f"gpu-check: unknown model(s) {', '.join(unknown)} (config has {', '.join(cfg['models'])})")
    cfg["models"] = {n: cfg["models"][n] for n in names}
    s = dict(TINY_SETTINGS if tiny else FULL_SETTINGS)
    for key, v in (("steps", steps), ("warmup", warmup), ("k", k), ("classes", classes)):
        if v is not None:
            s[key] = int(v)
    s["k_probe"] = min(s["k_probe"], s["k"])
    settings = {
        "budget_s": budget.total,
        "train_share": TRAIN_SHARE,
        "warmup_steps": s["warmup"],
        "steps": s["steps"],
        "min_steps": MIN_STEPS,
        "k_target": s["k"],
        "k_probe": s["k_probe"],
        "classes": s["classes"],
        "images_per_class": PER_CLASS,
        "models": names,
        "torch_threads": torch.get_num_threads(),
        "step": "Trainer._next_batch + Trainer._optimise (autocast per train.amp, Adam, clipping, schedule)",
    }
    info = common.machine_info(dev)
    result = {
        "format": cost.GPU_RATES_FORMAT,
        "version": 1,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev),
        "device_name": info["device_name"],
        "torch": torch.__version__,
        "cuda": info["cuda"],
        "git_commit": info["git_commit"],
        "machine": info,
        "config": str(config),
        "run": cfg["run"],
        "tiny": bool(tiny),
        "settings": settings,
        "data": {},
        "elapsed_s": None,
        "complete": False,
        "stopped": None,
        "models": {},
        "decoders": {},
        "projection": None,
    }
    reps = decoder_models(cfg)
    kept = {}  # decoder -> (model name, trained model): measured after training
    with tempfile.TemporaryDirectory(prefix="vhe-gpu-check-") as tmpdir:
        tmp = Path(tmpdir)
        data_paths, result["data"] = prepare_data(cfg, tmp, synthetic=tiny)
        import importlib

        import experiments.trainer  # noqa: F401  (imports and the CUDA context: not a model's build time)
        from experiments.registry import BUILDERS

        for module in {BUILDERS.get(e.get("experiment")) for e in cfg["models"].values()} - {None}:
            importlib.import_module(module)
        torch.zeros(1, device=dev)
        train_end = budget.start + TRAIN_SHARE * budget.total
        for i, name in enumerate(names):
            if budget.over():
                result["stopped"] = (
                    f"budget of {budget.total:g} s spent after {i} of {len(names)} models; not "
                    f"measured: {', '.join(names[i:])}"
                )
                break
            share = max(0.0, train_end - time.perf_counter()) / (len(names) - i)
            src = result["data"]["textured" if cfg["models"][name].get("experiment") == "factorial" else "background"]
            try:
                entry, trainer = train_model(
                    cfg, name, dev, tmp, share, budget, s["warmup"], s["steps"], data_paths, src
                )
            except Exception as e:  # noqa: BLE001 - e.g. CUDA out of memory: record it, measure the rest
                entry, trainer = (
                    {
                        "error": f"{type(e).__name__}: {str(e)[:400]}",
                        "signature": cost.model_signature(model_config(cfg, name)["model"]),
                    },
                    None,
                )
                log(f"gpu-check: {name}: {entry['error']}")
            result["models"][name] = entry
            if entry.get("images_per_s"):
                log(
                    f"gpu-check: {name}: {entry['steps']} steps, {entry['step_ms']:.1f} ms/step, "
                    f"{entry['images_per_s']:.0f} images/s, bound {entry['bound_start']:.1f} -> "
                    f"{entry['bound_end']:.1f}, peak {_fmt_mb(entry['peak_memory_mb'])}"
                )
            dec = entry.get("decoder")
            if trainer is not None and reps.get(dec) == name and entry.get("images_per_s"):
                kept[dec] = (name, trainer.model, model_config(cfg, name)["model"]["nets"])
            del trainer
            _free(dev)
        decoders = [d for d in reps if d in kept]
        if result["stopped"] is None and len(decoders) < len(reps):
            missing = [d for d in reps if d not in kept]
            log(f"gpu-check: no trained model to measure the {', '.join(missing)} decode rate with")
        if decoders and result["stopped"] is None:
            X = bench_eval.classes_tensor(s["classes"], PER_CLASS, dev)
        for j, dec in enumerate(decoders):
            if result["stopped"] is None and budget.over():
                result["stopped"] = (
                    f"budget of {budget.total:g} s spent before the decode rate of {', '.join(decoders[j:])}"
                )
            if result["stopped"] is not None:
                break
            name, model, nets = kept[dec]
            share = budget.left() / (len(decoders) - j)
            max_el = int(evaluation_for(cfg, dec).get("max_elements") or 8192)
            try:
                e = measure_decodes(model, nets, name, dev, X, s["k"], s["k_probe"], max_el, share, budget)
            except Exception as ex:  # noqa: BLE001
                log(f"gpu-check: decode rate of {dec}: {type(ex).__name__}: {ex}")
                result["decoders"][dec] = {"model": name, "error": f"{type(ex).__name__}: {str(ex)[:400]}"}
                continue
            result["decoders"][dec] = e
            log(
                f"gpu-check: {dec} decodes ({name}, max_elements {max_el}): {e['decodes_per_s']:.0f}/s, "
                f"{e['s_per_class']:.2f} s per class of {PER_CLASS} at K={s['k']}"
                + (f" (extrapolated from K={e['k_used']})" if e["extrapolated"] else "")
            )
            kept.pop(dec)
            del model
            _free(dev)
        kept.clear()
    result["elapsed_s"] = budget.elapsed()
    result["complete"] = (
        result["stopped"] is None
        and all(v.get("images_per_s") for v in result["models"].values())
        and len(result["models"]) == len(names)
        and set(result["decoders"]) == set(reps)
        and all(v.get("decodes_per_s") for v in result["decoders"].values())
    )
    g = cost.gpu_estimate(full, {**result, "path": str(out)})
    result["projection"] = {
        "assumption": g["assumption"],
        "wall_s": g["wall_s"],
        "train_s": g["train_s"],
        "eval_s": g["eval_s"],
        "n_measured": g["n_measured"],
        "models": {
            n: {
                k2: v[k2]
                for k2 in ("train_s", "eval_s", "train_images_per_s", "decodes_per_s", "train_source", "eval_source")
            }
            for n, v in g["models"].items()
        },
    }
    from vhe.files import write_json

    write_json(result, Path(out))
    return result


def _fmt_mb(mb) -> str:
    return "n/a (CPU)" if mb is None else f"{mb:.0f} MB"


def report(result: dict, out, log=print) -> None:
    """The projection (vhe-estimate --gpu's table, from the measured file) and where the file went."""
    from pipeline import estimate

    label = result["config"] + (" --tiny" if result["tiny"] else "")
    cfg = result["config"]
    if result["tiny"]:
        from experiments.config import load_config

        cfg = tiny_config(load_config(cfg))
    log("")
    estimate.print_gpu(cfg, {**result, "path": str(out)}, label=label)
    log(
        f"\nmeasured on {result['device_name']} ({result['device']}, torch {result['torch']}) in "
        f"{result['elapsed_s']:.0f} s; wrote {out}"
    )
    if not result["complete"]:
        log(
            f"gpu-check: INCOMPLETE: {result['stopped'] or 'some models or decoders failed (see their error)'}; "
            f"the missing rates stay guessed"
        )
    elif result["device"].startswith("cuda") and not result["tiny"]:
        log(
            "To use these rates: commit the file as pipeline/gpu_rates.json and add a dated note to "
            "docs/results/log.md (docs/operations.md, 'Running on a cluster')."
        )


def main(argv=None) -> int:
    """Command line; exit status 0 when everything was measured, 3 when the budget ran out first."""
    ap = argparse.ArgumentParser(prog="vhe-gpu-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"the profile (default {DEFAULT_CONFIG})")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"the JSON (default {DEFAULT_OUT})")
    ap.add_argument("--device", default="auto", help="cuda | cuda:N | cpu | auto (default: cuda when available)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"seconds for all the measurements (default {DEFAULT_BUDGET_S:g}; --tiny {TINY_BUDGET_S:g})",
    )
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="tiny networks, steps, K and data: the whole check on a CPU in seconds (tests)",
    )
    ap.add_argument("--models", nargs="+", default=None, help="only these models of the config")
    ap.add_argument("--steps", type=int, default=None, help=f"timed steps per model (default {FULL_SETTINGS['steps']})")
    ap.add_argument("--warmup", type=int, default=None, help=f"warm-up steps (default {FULL_SETTINGS['warmup']})")
    ap.add_argument("--k", type=int, default=None, help=f"importance samples K (default {FULL_SETTINGS['k']})")
    ap.add_argument(
        "--classes", type=int, default=None, help=f"classes of log p(X) (default {FULL_SETTINGS['classes']})"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; --tiny on a CPU: 1, as the pipeline's CPU jobs)",
    )
    a = ap.parse_args(argv)
    result = run(a.config, a.out, a.device, a.budget_s, a.tiny, a.models, a.steps, a.warmup, a.k, a.classes, a.threads)
    report(result, a.out)
    return 0 if result["complete"] else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
