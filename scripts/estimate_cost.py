#!/usr/bin/env python
"""What a pipeline run will cost on the CPU, estimated from the config and the measured benchmarks.

    python scripts/estimate_cost.py --config config/config.yaml --cores 2          # breakdown per model
    python scripts/estimate_cost.py --config config/config.yaml --cores 2 --gate   # what `make reproduce` runs
    python scripts/estimate_cost.py --config config/cpu.yaml --cores 2 --measured results/cpu  # vs a finished run

``--gate`` prints one line when the run looks affordable (or a GPU will be used) and exits 0. When
the CPU estimate exceeds ``--threshold-hours`` (default 6 h) it prints the estimate and the cheaper
command (``make reproduce CONFIG=config/cpu.yaml CORES=2``), then exits 0 only if the user
confirms: ``CONFIRM=1`` in the environment (``make reproduce CONFIRM=1``) or ``--yes``, or "y" at
the prompt when stdin is a terminal; otherwise it exits 1 and nothing starts.

The estimate, in seconds of wall-clock time, is computed from the resolved config (every model's
own ``nets`` / ``train`` overrides, ``experiments.config.model_config``). Assumptions (numbers from
README "Performance", config/cpu.yaml and bench/, measured on a 2-core AMD EPYC VM with torch 2.14.1,
one thread per job, under a background load of 3-4, so pessimistic for a quiet machine):

1. Training a class model, one CPU thread, fp32, one target per support set (T = 1): 187 images/s
   (deconv) and 85 images/s (PixelCNN 4 layers x 24 channels) with the cpu-profile networks, 59 and
   6.2 images/s with the paper-profile networks, at batch 64 (README, Performance). Between and
   beyond these sizes the rate follows a power law in a network-size proxy (``network_work``:
   conv_layers * conv_channels^2 + 2 * deconv_channels^2 for deconv, n_layers * channels^2 *
   kernel_size^2 for the PixelCNN) through the two points; networks smaller than the cpu profile's
   are taken to run no faster than it (per-operation overhead dominates them).
2. T targets per support set (``train.targets_per_class``): the part of a T = 1 step that depends
   on the support set shrinks as 1/T, calibrated on the measured T = 4 speed-ups (2.23x deconv,
   1.21x PixelCNN; README, "Several targets per support set"); not applied to the VAE.
3. bf16 autocast on the CPU (``train.amp_cpu``, resolved for *this* CPU: ``auto`` is fp32 without
   native bf16): 1.3x (deconv) and 1.65x (PixelCNN) the images/s (70 -> 54 ms, 330 -> 200 ms per
   step on a CPU with native bf16). ``train.amp`` (CUDA only) is ignored.
4. Cost of a step relative to a class model with the same decoder, networks, T and precision
   (config/cpu.yaml step times): hierarchical 5.0 (350 vs 70 ms), factorial 1.5 (500 vs 330 ms).
   A VAE step (no support set, no T) relative to a class step at T = 1 (171 ms deconv, 376 ms
   PixelCNN at batch 32, assumption 1): 0.33 for deconv and 0.82 for PixelCNN (measured alone on
   the AVX2-only VM, 2026-12-04: vae_deconv ~57 ms, vae_pixelcnn ~308 ms per step).
5. Every model trains ``max_steps`` steps (early stopping by ``patience`` is not predicted);
   validation batches, checkpoints and sample grids are not counted (< 1% at both profiles).
6. Image decodes (evaluation and the one-shot learning curve), one thread, cpu-profile networks:
   697/s (deconv) and 93/s (PixelCNN) in the default chunks (README, ``log_marginal`` at K = 1000),
   2000/s and 200/s when ``evaluation.max_elements`` <= 64 (config/cpu.yaml, evaluation comment);
   scaled to other networks like the training rate. Counted: the learning curve (n_runs * n_way^2
   * n_samples per point, x2 for symmetric, x3 for marginal_ratio), log p(X) (test characters * 20
   drawings * K) and, for the class models, classification on Lake's runs, the within-alphabet runs
   and the validation runs (queries * classes per run, K decodes per pair for conditional, 2K for
   symmetric, 3K for marginal_ratio, none for ns_kl). A VAE's evaluation is log p(X) alone (it has
   no class latent; vae_pixelcnn's took 46 s). The few-shot episodes, the structured models'
   evaluation, data preparation and figures are not counted, so evaluation is a lower bound.
7. Jobs run one thread each, ``min(cores, CPUs of this machine)`` side by side (the Snakefile's
   rule on the CPU), each ``SIDE_BY_SIDE_SLOWDOWN`` (1.15x) slower than alone when more than one
   runs (measured 2026-12-04 on the 2-core VM: the deconv class model 8000 steps in 756-788 s beside
   another job against ~660-700 s from its step time alone, 82 ms; vae_pixelcnn 714 s against
   ~620 s, 308 ms per step alone); wall time = max(total job
   time x slowdown / parallel jobs, the longest model's training + evaluation x slowdown).

On a GPU none of these numbers apply (no GPU benchmark has been measured): ``--gate`` says so and
lets the run start.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# above this wall-clock estimate --gate asks first: the cpu profile estimates ~2 h on 2 cores and
# ~3.5 h on one in fp32 (never asks); the paper profile on a CPU estimates months
DEFAULT_THRESHOLD_HOURS = 6.0
CPU_PROFILE = "config/cpu.yaml"

# networks of the measured benchmarks (config/cpu.yaml and config/config.yaml at the time)
_CPU_NETS = {"conv_layers": 4, "conv_channels": 32, "deconv_channels": 32,
             "pixelcnn": {"n_layers": 4, "channels": 24, "kernel_size": 5}}
_PAPER_NETS = {"conv_layers": 4, "conv_channels": 64, "deconv_channels": 64,
               "pixelcnn": {"n_layers": 12, "channels": 64, "kernel_size": 5}}
# training images/s of a class model, one CPU thread, fp32, T = 1: (cpu-profile nets, paper nets)
TRAIN_RATE = {"deconv": (187.0, 59.0), "pixelcnn": (85.0, 6.2)}
# image decodes/s, one CPU thread, cpu-profile nets: default chunks (log_marginal, K = 1000), and
# chunks of <= SMALL_CHUNK images (evaluation.max_elements; config/cpu.yaml's evaluation comment)
DECODE_RATE = {"deconv": 697.0, "pixelcnn": 93.0}
DECODE_RATE_SMALL_CHUNKS = {"deconv": 2000.0, "pixelcnn": 200.0}
SMALL_CHUNK = 64
T4_SPEEDUP = {"deconv": 2.23, "pixelcnn": 1.21}
SIDE_BY_SIDE_SLOWDOWN = 1.15  # each one-thread job when two or more share the machine (assumption 7)
BF16_SPEEDUP = {"deconv": 1.3, "pixelcnn": 1.65}
EXPERIMENT_FACTOR = {"class": 1.0, "hierarchical": 5.0, "factorial": 1.5}
VAE_FACTOR = {"deconv": 0.33, "pixelcnn": 0.82}  # a VAE step / a class step at T = 1 (assumption 4)
# decodes per (query, class) pair per sample K, 1-shot: conditional K, symmetric K (1 + |D|), marginal_ratio K (|D| + 2)
ESTIMATOR_DECODES = {"conditional": 1, "symmetric": 2, "marginal_ratio": 3, "ns_kl": 0}
OMNIGLOT_EVAL_CHARACTERS = 659
DRAWINGS = 20
LAKE_RUNS, LAKE_WAY = 20, 20


def network_work(decoder: str, nets: dict) -> float:
    """Relative size of a model's networks (arbitrary units, proportional to multiply-adds per pixel)."""
    if decoder == "pixelcnn":
        p = nets["pixelcnn"]
        return float(p["n_layers"] * p["channels"] ** 2 * p["kernel_size"] ** 2)
    return float(nets["conv_layers"] * nets["conv_channels"] ** 2 + 2 * nets["deconv_channels"] ** 2)


def _size_scale(decoder: str, nets: dict) -> float:
    """Rate at these networks / rate at the cpu-profile networks (<= 1; power law, assumption 1)."""
    w_small, w_big = network_work(decoder, _CPU_NETS), network_work(decoder, _PAPER_NETS)
    r_small, r_big = TRAIN_RATE[decoder]
    alpha = math.log(r_small / r_big) / math.log(w_big / w_small)
    w = network_work(decoder, nets)
    return 1.0 if w <= w_small else (w / w_small) ** (-alpha)


def train_rate(experiment: str, decoder: str, nets: dict, targets_per_class: int = 1, bf16: bool = False) -> float:
    """Training images (targets) per second of one model on one CPU thread (assumptions 1-4)."""
    rate = TRAIN_RATE[decoder][0] * _size_scale(decoder, nets)
    if experiment != "vae" and targets_per_class > 1:
        phi = (1 - 1 / T4_SPEEDUP[decoder]) / (1 - 1 / 4)       # share of a T = 1 step spent per support set
        rate /= 1 - phi * (1 - 1 / targets_per_class)
    if bf16:
        rate *= BF16_SPEEDUP[decoder]
    return rate / (VAE_FACTOR[decoder] if experiment == "vae" else EXPERIMENT_FACTOR[experiment])


def decode_rate(decoder: str, nets: dict, max_elements: int | None = None) -> float:
    """Image decodes per second on one CPU thread, fp32, in chunks of ``max_elements`` images (assumption 6)."""
    table = DECODE_RATE_SMALL_CHUNKS if max_elements is not None and max_elements <= SMALL_CHUNK else DECODE_RATE
    return table[decoder] * _size_scale(decoder, nets)


def _eval_setting(cfg: dict, decoder: str, key: str):
    """evaluation[key], or its evaluation.per_decoder[decoder] override when set."""
    ev = cfg["evaluation"]
    over = ((ev.get("per_decoder") or {}).get(decoder) or {}).get(key)
    return ev.get(key) if over is None else over


def _pairs_decodes(n_pairs: int, estimators, k: int) -> int:
    return n_pairs * k * sum(ESTIMATOR_DECODES.get(e, 1) for e in estimators)


def evaluation_decodes(cfg: dict, decoder: str, experiment: str = "class") -> int:
    """Image decodes of one class/VAE model's evaluation (assumption 6): log p(X), and for a class
    model the one-shot classification (a VAE has no class latent to classify with)."""
    ev = cfg["evaluation"]
    k = _eval_setting(cfg, decoder, "n_samples")
    kc = _eval_setting(cfg, decoder, "classification_samples")
    maxc = cfg["data"].get("max_characters")
    n_chars = min(OMNIGLOT_EVAL_CHARACTERS, maxc or OMNIGLOT_EVAL_CHARACTERS)
    n_classes = min(n_chars, ev.get("max_classes") or n_chars)
    total = n_classes * DRAWINGS * k
    if experiment != "class":
        return int(total)
    est = ev.get("estimators") or list(ESTIMATOR_DECODES)
    if ev.get("lake_runs", True):
        runs = min(LAKE_RUNS, ev.get("max_runs") or LAKE_RUNS)
        total += _pairs_decodes(runs * LAKE_WAY * LAKE_WAY, est, kc)
    way = min(20, maxc or 20)
    total += _pairs_decodes(int(ev.get("within_alphabet_runs") or 0) * way * way, est, kc)
    vr = ev.get("validation_runs") or {}
    total += _pairs_decodes(int(vr.get("n_runs", 0)) * int(vr.get("n_way", 0)) ** 2, est, kc)
    return int(total)


def curve_decodes(train: dict, steps: int) -> int:
    """Image decodes of the one-shot learning curve during training (assumption 6)."""
    cc = train.get("one_shot_curve") or {}
    every = cc.get("every")
    if not every:
        return 0
    points = steps // every + (1 if steps % every else 0)
    per_point = cc["n_runs"] * cc["n_way"] ** 2 * cc["n_samples"] * ESTIMATOR_DECODES.get(cc.get("method"), 1)
    return int(points * per_point)


def usable_cores(cores: int) -> int:
    """Jobs side by side: min(cores asked, CPUs this process may use), at least 1."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = os.cpu_count() or 1
    return max(1, min(int(cores), avail))


def estimate(config, cores: int = 1) -> dict:
    """CPU cost of the pipeline for ``config`` (a path or a dict), in seconds.

    Returns {"run", "parallel" (jobs side by side), "models": {name: {"experiment", "decoder",
    "steps", "batch_size", "train_images_per_s", "train_s", "eval_s"}}, "train_s", "eval_s" (sums of
    one-thread job time), "job_s" (their sum), "wall_s" (wall-clock estimate)}.
    """
    from experiments.config import load_config, model_config
    from experiments.precision import cpu_flags, resolve_amp_cpu

    cfg = load_config(config)
    par = usable_cores(cores)
    flags = cpu_flags()  # this machine's, read once for every model's train.amp_cpu
    out = {"run": cfg["run"], "parallel": par, "models": {}}
    for name, entry in cfg["models"].items():
        m = model_config(cfg, name)["model"]
        exp, dec, nets, tr = m["experiment"], m["decoder"], m["nets"], m["train"]
        steps, batch = int(tr["max_steps"]), int(tr["batch_size"])
        rate = train_rate(exp, dec, nets, int(tr.get("targets_per_class") or 1),
                          resolve_amp_cpu(tr.get("amp_cpu"), flags))
        curve = curve_decodes(tr, steps) if exp != "vae" else 0
        train_s = steps * batch / rate + curve / decode_rate(dec, nets)
        eval_rate = decode_rate(dec, nets, _eval_setting(cfg, dec, "max_elements"))
        eval_s = evaluation_decodes(cfg, dec, exp) / eval_rate if exp in ("class", "vae") else 0.0
        out["models"][name] = {"experiment": exp, "decoder": dec, "steps": steps, "batch_size": batch,
                               "train_images_per_s": rate, "train_s": train_s, "eval_s": eval_s}
    ms = out["models"].values()
    out["train_s"] = sum(v["train_s"] for v in ms)
    out["eval_s"] = sum(v["eval_s"] for v in ms)
    out["job_s"] = out["train_s"] + out["eval_s"]
    longest = max((v["train_s"] + v["eval_s"] for v in ms), default=0.0)
    slowdown = SIDE_BY_SIDE_SLOWDOWN if par > 1 else 1.0
    out["wall_s"] = slowdown * max(out["job_s"] / par, longest)
    return out


def fmt_duration(seconds: float) -> str:
    """A duration given in seconds as '40 s', '45 min', '5.2 h' or '38 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def measured_times(run_dir) -> dict:
    """Wall seconds each model's jobs took in a finished run, from Snakemake's benchmark files
    ``<run_dir>/benchmarks/{train,evaluate}/<model>.tsv`` (column ``s``): {model: {"train_s",
    "eval_s"}}, None where a file is missing (the job has not run)."""
    import csv

    def seconds(path: Path):
        if not path.is_file():
            return None
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no column 's')")
        return sum(float(r["s"]) for r in rows) / len(rows)

    bench = Path(run_dir) / "benchmarks"
    if not bench.is_dir():
        raise FileNotFoundError(f"{bench}: no Snakemake benchmarks (is {run_dir} a results/<run> directory?)")
    names = {p.stem for sub in ("train", "evaluate") for p in (bench / sub).glob("*.tsv")}
    return {n: {"train_s": seconds(bench / "train" / f"{n}.tsv"), "eval_s": seconds(bench / "evaluate" / f"{n}.tsv")}
            for n in sorted(names)}


def compare(est: dict, measured: dict) -> list[dict]:
    """Per model of ``est`` with a measurement: estimated job seconds (x SIDE_BY_SIDE_SLOWDOWN when
    the estimate runs jobs side by side, as the measured run did) next to the measured ones, and
    measured / estimated. Rows {"model", "job", "estimated_s", "measured_s", "ratio"}."""
    slowdown = SIDE_BY_SIDE_SLOWDOWN if est["parallel"] > 1 else 1.0
    rows = []
    for name, v in est["models"].items():
        for job in ("train", "eval"):
            got = (measured.get(name) or {}).get(f"{job}_s")
            if got is None:
                continue
            want = v[f"{job}_s"] * slowdown
            rows.append({"model": name, "job": job, "estimated_s": want, "measured_s": got,
                         "ratio": got / want if want > 0 else float("nan")})
    return rows


def gpu_will_be_used(config) -> str | None:
    """The CUDA device name when the config's ``device`` will pick a GPU here, else None."""
    from experiments.config import load_config

    device = load_config(config)["device"]
    if device == "cpu":
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    idx = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_name(idx)


def _confirmed_by_env() -> bool:
    return os.environ.get("CONFIRM", "").strip().lower() in ("1", "y", "yes", "true")


def gate(config, cores: int, threshold_hours: float = DEFAULT_THRESHOLD_HOURS, yes: bool = False,
         assume_cpu: bool = False, stdin=None, out=None) -> int:
    """Say what the run will cost; 0 = start, 1 = stop (see the module docstring)."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if out is None else out
    from experiments.config import load_config

    on_cpu_by_config = load_config(config)["device"] == "cpu"
    gpu = None if assume_cpu else gpu_will_be_used(config)
    if gpu:
        print(f"cost: {config} will train on the GPU ({gpu}); no GPU benchmark has been measured, so no "
              f"estimate (the CPU estimate is `python scripts/estimate_cost.py --config {config} --cpu`).",
              file=out)
        return 0
    est = estimate(config, cores)
    wall = est["wall_s"]
    summary = (f"{config} (run '{est['run']}', {len(est['models'])} models) on the CPU: about {fmt_duration(wall)} "
               f"({est['parallel']} job(s) side by side; training {fmt_duration(est['train_s'])} + evaluation "
               f"{fmt_duration(est['eval_s'])} of one-thread job time)")
    if wall <= threshold_hours * 3600:
        print(f"cost: {summary}.", file=out)
        return 0
    cheaper = ""
    if Path(config).resolve() != (ROOT / CPU_PROFILE).resolve() and (ROOT / CPU_PROFILE).is_file():
        cheaper = f" (about {fmt_duration(estimate(ROOT / CPU_PROFILE, 2)['wall_s'])} on 2 cores)"
    default = Path(config).resolve() == (ROOT / "config" / "config.yaml").resolve()
    anyway = "make reproduce " + ("" if default else f"CONFIG={config} ") + "CONFIRM=1"
    why = "the config sets device: cpu" if on_cpu_by_config else "no GPU was found"
    print(f"\n*** cost: {summary},\n"
          f"*** estimated from the measured CPU benchmarks (README, Performance; assumptions in\n"
          f"*** scripts/estimate_cost.py), above the {threshold_hours:g} h this gate lets start unasked ({why}).\n"
          f"*** On a CPU run the reduced profile instead{cheaper}:\n"
          f"***     make reproduce CONFIG={CPU_PROFILE} CORES=2\n"
          f"*** To start this one anyway: {anyway} (or CONFIRM=1 in the environment).\n",
          file=out)
    if yes or _confirmed_by_env():
        print("cost: confirmed (CONFIRM set): starting.", file=out)
        return 0
    if stdin.isatty():
        print("Start it anyway? [y/N] ", end="", file=out, flush=True)
        answer = stdin.readline().strip().lower()
        if answer in ("y", "yes"):
            return 0
        print("cost: not started.", file=out)
        return 1
    print("cost: not started (stdin is not a terminal and CONFIRM is not set).", file=out)
    return 1


def main(argv=None) -> int:
    """Command line: the breakdown, or with ``--gate`` the decision (exit status 0 = start)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/config.yaml", help="the profile (default: config/config.yaml)")
    ap.add_argument("--cores", type=int, default=int(os.environ.get("CORES") or 1),
                    help="Snakemake --cores (jobs side by side; capped at this machine's CPUs)")
    ap.add_argument("--gate", action="store_true", help="print the cost and ask before an expensive CPU run")
    ap.add_argument("--threshold-hours", type=float, default=DEFAULT_THRESHOLD_HOURS,
                    help=f"--gate asks above this wall-clock estimate (default {DEFAULT_THRESHOLD_HOURS:g} h)")
    ap.add_argument("--yes", action="store_true", help="--gate: start without asking (like CONFIRM=1)")
    ap.add_argument("--cpu", action="store_true", help="estimate for the CPU even if a GPU is available")
    ap.add_argument("--measured", metavar="RUN_DIR",
                    help="compare with the job times of a finished run of this config (results/<run>)")
    a = ap.parse_args(argv)
    try:
        if a.gate:
            return gate(a.config, a.cores, a.threshold_hours, yes=a.yes, assume_cpu=a.cpu)
        est = estimate(a.config, a.cores)
    except Exception as e:  # a bad config: say so, do not block `make reproduce` on the estimator itself
        print(f"cost: no estimate for {a.config} ({type(e).__name__}: {e})", file=sys.stderr)
        return 2 if not a.gate else 0
    print(f"{a.config}: run '{est['run']}' on the CPU, {est['parallel']} job(s) side by side")
    print(f"{'model':20s} {'decoder':8s} {'steps':>7s} {'batch':>5s} {'img/s':>7s} {'train':>9s} {'eval':>9s}")
    for name, v in est["models"].items():
        print(f"{name:20s} {v['decoder']:8s} {v['steps']:7d} {v['batch_size']:5d} {v['train_images_per_s']:7.1f} "
              f"{fmt_duration(v['train_s']):>9s} {fmt_duration(v['eval_s']):>9s}")
    print(f"one-thread job time: training {fmt_duration(est['train_s'])}, evaluation {fmt_duration(est['eval_s'])}; "
          f"wall-clock estimate {fmt_duration(est['wall_s'])} ({est['wall_s'] / 3600:.2f} h)")
    if a.measured:
        try:
            rows = compare(est, measured_times(a.measured))
        except (OSError, ValueError) as e:
            print(f"cost: cannot compare with {a.measured}: {e}", file=sys.stderr)
            return 2
        print(f"\nmeasured in {a.measured} (Snakemake benchmarks; estimate x {SIDE_BY_SIDE_SLOWDOWN} when jobs "
              f"run side by side):")
        print(f"{'model':20s} {'job':5s} {'estimated':>10s} {'measured':>10s} {'ratio':>6s}")
        for r in rows:
            print(f"{r['model']:20s} {r['job']:5s} {fmt_duration(r['estimated_s']):>10s} "
                  f"{fmt_duration(r['measured_s']):>10s} {r['ratio']:6.2f}")
        want, got = sum(r["estimated_s"] for r in rows), sum(r["measured_s"] for r in rows)
        if rows:
            print(f"all measured jobs: estimated {fmt_duration(want)}, measured {fmt_duration(got)} "
                  f"(ratio {got / want:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
