#!/usr/bin/env python
"""What a pipeline run will cost on the CPU, estimated from the config and the measured benchmarks.

    vhe-estimate --config config/config.yaml --cores 2          # breakdown per model (or python -m pipeline.estimate)
    vhe-estimate --config config/config.yaml --cores 2 --gate   # what `make reproduce` runs
    vhe-estimate --config config/cpu.yaml --cores 2 --measured results/cpu  # vs a finished run
    vhe-estimate --config config/cpu.yaml --cores 2 --calibrate results/cpu # its pipeline_ratio (rates.json)
    vhe-estimate --config config/config.yaml --gpu   # with one GPU (snakemake --cores 8 --resources gpu=1)

``--gate`` prints one line when the run looks affordable (or a GPU will be used) and exits 0. When
the CPU estimate exceeds ``--threshold-hours`` (default 6 h) it prints the estimate and the cheaper
command (``make reproduce CONFIG=config/cpu.yaml CORES=2``), then exits 0 only if the user
confirms: ``CONFIRM=1`` in the environment (``make reproduce CONFIRM=1``) or ``--yes``, or "y" at
the prompt when stdin is a terminal; otherwise it exits 1 and nothing starts.

The estimate, in seconds of wall-clock time, comes from the cost model ``pipeline/cost.py`` (its
docstring states every assumption) priced with the measured rates in ``pipeline/rates.json``; the
rules' runtime resources use the same model. With one GPU (``--gpu``, and ``--gate`` on a machine
whose GPU the config will use) the GPU jobs run one at a time and each model is priced with the
rates ``make gpu-check`` measured (``pipeline/gpu_rates.json``, ``$VHE_GPU_RATES`` or
``--gpu-rates``) where they apply, else with ``gpu_speedup_guess``; the breakdown says which
(cost.py, assumption 8). On a GPU ``--gate`` prints that projection and lets the run start.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments.precision import AVX2_ONLY_FLAGS, cpu_name
from pipeline import cost
from pipeline.cost import (
    DRAWINGS,
    curve_decodes,
    decode_rate,
    estimate,
    evaluation_decodes,
    network_work,
    train_rate,
    usable_cores,
)

#: the command line, and the cost model's functions it prices with (re-exported for callers of this module)
__all__ = [
    "main",
    "gate",
    "compare",
    "calibration",
    "measured_times",
    "fmt_duration",
    "estimate",
    "evaluation_decodes",
    "curve_decodes",
    "decode_rate",
    "network_work",
    "train_rate",
    "usable_cores",
    "DRAWINGS",
]

ROOT = Path(__file__).resolve().parent.parent  # the checkout (profiles are looked up there)
# above this wall-clock estimate --gate asks first (the cpu profile never asks; the paper profile
# on a CPU estimates months)
DEFAULT_THRESHOLD_HOURS = 6.0
CPU_PROFILE = "config/cpu.yaml"
_RATES = cost.rates()
_CPU_NETS, _PAPER_NETS = _RATES["cpu_nets"], _RATES["paper_nets"]
SIDE_BY_SIDE_SLOWDOWN = _RATES["side_by_side_slowdown"]


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
    return {
        n: {"train_s": seconds(bench / "train" / f"{n}.tsv"), "eval_s": seconds(bench / "evaluate" / f"{n}.tsv")}
        for n in sorted(names)
    }


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
            rows.append(
                {
                    "model": name,
                    "job": job,
                    "estimated_s": want,
                    "measured_s": got,
                    "ratio": got / want if want > 0 else float("nan"),
                }
            )
    return rows


def calibration(est: dict, measured: dict) -> dict:
    """Per job kind (``cost.job_kind``) and job: the measured one-thread job time over the estimate
    (:func:`compare`'s ratio, summed over the models of that kind), rounded to 0.01. ``est`` must be
    uncalibrated (``estimate(..., calibrated=False)``) and priced for the CPU that ran ``measured``.
    Returns {kind: {"train": ratio, "eval": ratio}}: rates.json's ``pipeline_ratio.ratios``."""
    sums: dict = {}
    for r in compare(est, measured):
        kind = est["models"][r["model"]]["kind"]
        s = sums.setdefault(kind, {}).setdefault(r["job"], [0.0, 0.0])
        s[0] += r["measured_s"]
        s[1] += r["estimated_s"]
    return {
        kind: {job: round(got / want, 2) for job, (got, want) in sorted(jobs.items()) if want > 0}
        for kind, jobs in sorted(sums.items())
    }


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


def gate(
    config,
    cores: int,
    threshold_hours: float = DEFAULT_THRESHOLD_HOURS,
    yes: bool = False,
    assume_cpu: bool = False,
    stdin=None,
    out=None,
) -> int:
    """Say what the run will cost; 0 = start, 1 = stop (see the module docstring)."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if out is None else out
    from experiments.config import load_config

    on_cpu_by_config = load_config(config)["device"] == "cpu"
    gpu = None if assume_cpu else gpu_will_be_used(config)
    if gpu:
        try:
            g = cost.gpu_estimate(config)
            what = (
                f"about {fmt_duration(g['wall_s'])} with one GPU, GPU jobs one at a time ({gpu_sources(g)}; "
                f"`vhe-estimate --config {config} --gpu` has the breakdown)"
            )
        except (OSError, ValueError) as e:  # an unreadable GPU-rates file must not block the run
            what = f"no GPU estimate ({type(e).__name__}: {e})"
        print(f"cost: {config} will train on the GPU ({gpu}): {what}.", file=out)
        return 0
    est = estimate(config, cores)
    wall = est["wall_s"]
    summary = (
        f"{config} (run '{est['run']}', {len(est['models'])} models) on the CPU: about {fmt_duration(wall)} "
        f"({est['parallel']} job(s) side by side; training {fmt_duration(est['train_s'])} + evaluation "
        f"{fmt_duration(est['eval_s'])} of one-thread job time)"
    )
    if wall <= threshold_hours * 3600:
        print(f"cost: {summary}.", file=out)
        return 0
    cheaper = ""
    if Path(config).resolve() != (ROOT / CPU_PROFILE).resolve() and (ROOT / CPU_PROFILE).is_file():
        cheaper = f" (about {fmt_duration(estimate(ROOT / CPU_PROFILE, 2)['wall_s'])} on 2 cores)"
    default = Path(config).resolve() == (ROOT / "config" / "config.yaml").resolve()
    anyway = "make reproduce " + ("" if default else f"CONFIG={config} ") + "CONFIRM=1"
    why = "the config sets device: cpu" if on_cpu_by_config else "no GPU was found"
    print(
        f"\n*** cost: {summary},\n"
        f"*** estimated from the measured CPU benchmarks (pipeline/rates.json; assumptions in\n"
        f"*** pipeline/cost.py), above the {threshold_hours:g} h this gate lets start unasked ({why}).\n"
        f"*** On a CPU run the reduced profile instead{cheaper}:\n"
        f"***     make reproduce CONFIG={CPU_PROFILE} CORES=2\n"
        f"*** To start this one anyway: {anyway} (or CONFIRM=1 in the environment).\n",
        file=out,
    )
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


def gpu_sources(g: dict) -> str:
    """Where a :func:`cost.gpu_estimate`'s rates come from, in words."""
    n, total = g["n_measured"], len(g["models"])
    m = g["measured"]
    if not m or not n:
        return f"guessed: {cost.rates()['gpu_speedup_guess']}x one CPU thread; `make gpu-check` measures the rates" + (
            f"; {m['path']} matches none of these models" if m else ""
        )
    return (
        f"training rates of {n} of {total} models measured on {m.get('device_name')} ({m.get('date')}, "
        f"{m['path']})" + (", the rest guessed" if n < total else "")
    )


def print_gpu(config, gpu_rates=cost.AUTO, out=None, label: str | None = None) -> dict:
    """The breakdown with one GPU (cost.gpu_estimate), each rate marked measured or guess;
    ``label`` names the config (default: ``config``)."""
    out = sys.stdout if out is None else out
    g = cost.gpu_estimate(config, gpu_rates)
    print(f"{label or config}: run '{g['run']}' with one GPU ({gpu_sources(g)})", file=out)
    print(
        f"{'model':20s} {'decoder':8s} {'steps':>7s} {'batch':>5s} {'img/s':>8s} {'train':>9s} {'eval':>9s}  source "
        f"(train/eval)",
        file=out,
    )
    for name, v in g["models"].items():
        print(
            f"{name:20s} {v['decoder']:8s} {v['steps']:7d} {v['batch_size']:5d} {v['train_images_per_s']:8.1f} "
            f"{fmt_duration(v['train_s']):>9s} {fmt_duration(v['eval_s']):>9s}  {v['train_source']}/"
            f"{v['eval_source']}",
            file=out,
        )
    print(
        f"GPU job time: training {fmt_duration(g['train_s'])}, evaluation {fmt_duration(g['eval_s'])}; wall-clock "
        f"estimate {fmt_duration(g['wall_s'])} ({g['wall_s'] / 3600:.2f} h)",
        file=out,
    )
    print(f"assumption: {g['assumption']}", file=out)
    return g


def calibration_source(run_dir, config, cores: int) -> str:
    """Where a calibration comes from, as one line: the run's last evaluation date, commits and torch
    (``experiments.artifacts.run_provenance``, where its metrics files are readable), this machine's
    CPU and the command."""
    from experiments.artifacts import run_provenance

    try:
        prov = run_provenance(run_dir)
    except (OSError, ValueError, AttributeError):
        prov = {}
    run = ", ".join(
        f"{k} {v}"
        for k, v in (
            ("evaluated", max(prov.get("date") or [""])[:10]),
            ("commit", ", ".join(sorted(c[:7] for c in prov.get("git_commit", ())))),
            ("torch", ", ".join(sorted(prov.get("torch", ())))),
        )
        if v
    )
    return (
        f"run {run_dir} ({run or 'no provenance found'}) on {cpu_name()} with {os.cpu_count()} CPUs: "
        f"vhe-estimate --config {config} --cores {cores} --calibrate {run_dir}"
    )


def print_calibration(config, cores: int, run_dir, out=None) -> int:
    """Print the ``pipeline_ratio`` block of rates.json measured on ``run_dir`` (see :func:`calibration`)."""
    import json

    out = out or sys.stdout
    try:
        ratios = calibration(estimate(config, cores, calibrated=False), measured_times(run_dir))
    except (OSError, ValueError) as e:
        print(f"cost: cannot calibrate on {run_dir}: {e}", file=sys.stderr)
        return 2
    if not ratios:
        print(f"cost: {run_dir} holds no job of {config} to calibrate on", file=sys.stderr)
        return 2
    block = {"pipeline_ratio": {"measured": calibration_source(run_dir, config, cores), "ratios": ratios}}
    print(json.dumps(block, indent=2), file=out)
    return 0


def main(argv=None) -> int:
    """Command line: the breakdown, or with ``--gate`` the decision (exit status 0 = start)."""
    ap = argparse.ArgumentParser(prog="vhe-estimate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/config.yaml", help="the profile (default: config/config.yaml)")
    ap.add_argument(
        "--cores",
        type=int,
        default=int(os.environ.get("CORES") or 1),
        help="Snakemake --cores (jobs side by side; capped at this machine's CPUs)",
    )
    ap.add_argument("--gate", action="store_true", help="print the cost and ask before an expensive CPU run")
    ap.add_argument(
        "--threshold-hours",
        type=float,
        default=DEFAULT_THRESHOLD_HOURS,
        help=f"--gate asks above this wall-clock estimate (default {DEFAULT_THRESHOLD_HOURS:g} h)",
    )
    ap.add_argument("--yes", action="store_true", help="--gate: start without asking (like CONFIRM=1)")
    ap.add_argument("--cpu", action="store_true", help="estimate for the CPU even if a GPU is available")
    ap.add_argument(
        "--gpu",
        action="store_true",
        help="the projection with one GPU (GPU jobs one at a time; measured rates where they exist)",
    )
    ap.add_argument(
        "--gpu-rates",
        metavar="JSON",
        default=None,
        help="--gpu: the GPU-rates file (`make gpu-check`'s output; default $VHE_GPU_RATES, else "
        "pipeline/gpu_rates.json when it exists)",
    )
    ap.add_argument(
        "--avx2-only",
        action="store_true",
        help="price the run for a CPU with AVX2 and no AVX-512 (fp32 training) instead of this one",
    )
    ap.add_argument(
        "--measured",
        metavar="RUN_DIR",
        help="compare with the job times of a finished run of this config (results/<run>)",
    )
    ap.add_argument(
        "--calibrate",
        metavar="RUN_DIR",
        help="print rates.json's pipeline_ratio measured on a finished run of this config (results/<run>), "
        "run on the machine that ran it (cost.py, assumption 9)",
    )
    a = ap.parse_args(argv)
    if a.calibrate:
        return print_calibration(a.config, a.cores, a.calibrate)
    try:
        if a.gate:
            return gate(a.config, a.cores, a.threshold_hours, yes=a.yes, assume_cpu=a.cpu)
        if a.gpu:
            print_gpu(a.config, a.gpu_rates or cost.AUTO)
            return 0
        est = estimate(a.config, a.cores, AVX2_ONLY_FLAGS if a.avx2_only else None)
    except Exception as e:  # a bad config: say so, do not block `make reproduce` on the estimator itself
        print(f"cost: no estimate for {a.config} ({type(e).__name__}: {e})", file=sys.stderr)
        return 2 if not a.gate else 0
    cpu = "an AVX2-only CPU" if a.avx2_only else "the CPU"
    print(f"{a.config}: run '{est['run']}' on {cpu}, {est['parallel']} job(s) side by side")
    print(f"{'model':20s} {'decoder':8s} {'steps':>7s} {'batch':>5s} {'img/s':>7s} {'train':>9s} {'eval':>9s}")
    for name, v in est["models"].items():
        print(
            f"{name:20s} {v['decoder']:8s} {v['steps']:7d} {v['batch_size']:5d} {v['train_images_per_s']:7.1f} "
            f"{fmt_duration(v['train_s']):>9s} {fmt_duration(v['eval_s']):>9s}"
        )
    print(
        f"one-thread job time: training {fmt_duration(est['train_s'])}, evaluation {fmt_duration(est['eval_s'])}; "
        f"wall-clock estimate {fmt_duration(est['wall_s'])} ({est['wall_s'] / 3600:.2f} h)"
    )
    if a.measured:
        try:
            rows = compare(est, measured_times(a.measured))
        except (OSError, ValueError) as e:
            print(f"cost: cannot compare with {a.measured}: {e}", file=sys.stderr)
            return 2
        print(
            f"\nmeasured in {a.measured} (Snakemake benchmarks; estimate x {SIDE_BY_SIDE_SLOWDOWN} when jobs "
            f"run side by side):"
        )
        print(f"{'model':20s} {'job':5s} {'estimated':>10s} {'measured':>10s} {'ratio':>6s}")
        for r in rows:
            print(
                f"{r['model']:20s} {r['job']:5s} {fmt_duration(r['estimated_s']):>10s} "
                f"{fmt_duration(r['measured_s']):>10s} {r['ratio']:6.2f}"
            )
        want, got = sum(r["estimated_s"] for r in rows), sum(r["measured_s"] for r in rows)
        if rows:
            print(
                f"all measured jobs: estimated {fmt_duration(want)}, measured {fmt_duration(got)} "
                f"(ratio {got / want:.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
