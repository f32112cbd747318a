"""Run the four benchmarks and write summary.json + summary.md.

    python -m bench.run_all --small                       # CI (make bench): a few seconds each
    python -m bench.run_all                               # full mode: the recorded numbers
    python -m bench.run_all --device cuda --out-dir $OUT  # on a GPU machine (synthetic data if no mirror)

Each benchmark writes <out-dir>/<name>.json (loader, train, eval, sample); the summary files
hold every table plus the machine, the load average and the settings. A benchmark that fails
is recorded in the summary (with its error) and makes the exit status 1. With ``--only``, the
other benchmarks' results already in <out-dir>/summary.json are kept (each carries its date),
so a GPU session can run ``--only loader train`` and ``--only eval sample`` as two jobs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from . import bench_classify, bench_eval, bench_loader, bench_sample, bench_targets, bench_train, common

BENCHES = {
    "loader": (
        bench_loader,
        "Episode sampling: vhe.DataLoader vs per-element baseline (episodes/s)",
        ["device", "threads", "batch", "vhe_eps_per_s", "naive_eps_per_s", "speedup", "target_met", "outputs_match"],
    ),
    "train": (
        bench_train,
        "Training throughput (images/s) and data-loading share of step time",
        [
            "profile",
            "decoder",
            "device",
            "variant",
            "batch",
            "images_per_s",
            "step_ms",
            "data_ms",
            "data_share",
            "target_met",
            "error",
        ],
    ),
    "eval": (
        bench_eval,
        "log_marginal, K=1000, 20 images per class",
        [
            "profile",
            "decoder",
            "device",
            "variant",
            "k_used",
            "classes_per_s",
            "s_per_class",
            "decodes_per_s",
            "extrapolated",
        ],
    ),
    "classify": (
        bench_classify,
        "One Lake-style run, four estimators: separate vs shared draws",
        [
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
        ],
    ),
    "targets": (
        bench_targets,
        "Several targets per support set: targets/s and training time to a fixed validation bound",
        [
            "decoder",
            "variant",
            "steps",
            "targets_per_s",
            "speedup_targets_per_s",
            "final_val_bound",
            "target_bound",
            "time_to_target_s",
            "time_ratio_to_target",
        ],
    ),
    "sample": (
        bench_sample,
        "Sampling a batch of 64 28x28 images",
        ["profile", "decoder", "device", "variant", "batch_used", "s_per_batch64", "images_per_s", "extrapolated"],
    ),
}


def run_one(name: str, small: bool, device: str, out: Path, profiles=None, compile_=None):
    module = BENCHES[name][0]
    kwargs = {"small": small, "device": device, "out": out}
    if name != "loader":
        kwargs["profiles"] = profiles
    if name == "train":
        kwargs["compile_"] = compile_
        if common.resolve_device(device).type == "cuda":
            kwargs["min_time"] = 1.0 if small else 5.0  # GPU steps are fast; stay within a 10-minute job
    return module.run(**kwargs)


def summary_markdown(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        "# VHE benchmarks",
        "",
        f"- date: {summary['date']}  (mode: {'small / CI' if summary['small'] else 'full'})",
        f"- machine: {m['platform']}; {m['cpu']} x {m['cpu_count']}; torch {m['torch']} "
        f"({m['torch_threads']} threads); device {m['device']} ({m['device_name']})",
        f"- load average: start {summary['load_average_start']}, end {summary['load_average_end']}",
        f"- data: {summary.get('data')}",
        f"- git: {m['git_commit']}",
        "",
    ]
    for name, res in summary["results"].items():
        title, cols = BENCHES[name][1], BENCHES[name][2]
        if "error" in res and "rows" not in res:
            lines += [f"## {name}", "", f"FAILED: `{res['error']}`", ""]
            continue
        cols = [c for c in cols if any(c in r for r in res["rows"])]
        lines += [f"## {name}: {title}", "", common.format_table(res["rows"], cols, markdown=True), ""]
        if res.get("skipped"):
            lines += [f"Skipped: {', '.join(s['profile'] + '/' + s['decoder'] for s in res['skipped'])}", ""]
    lines += ["## Targets", ""] + [f"- {t}" for t in summary["targets"]] + [""]
    return "\n".join(lines)


def targets(results: dict) -> list[str]:
    out = []
    lo = results.get("loader", {}).get("rows")
    if lo:
        for r in lo:
            out.append(
                f"loader speedup >= {bench_loader.TARGET_SPEEDUP:g}x ({r['device']}, {r.get('threads')} threads, "
                f"batch {r['batch']}): {r['speedup']:.1f}x -> {'met' if r['target_met'] else 'NOT met'}"
            )
    tr = results.get("train", {}).get("rows")
    if tr:
        for r in tr:
            if "target_met" in r:
                out.append(
                    f"data share < {bench_train.TARGET_DATA_SHARE:.0%} ({r['profile']} deconv, CPU): "
                    f"{r['data_share']:.1%} -> {'met' if r['target_met'] else 'NOT met'}"
                )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="CI mode: each benchmark a few seconds, K/batch extrapolated")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--out-dir", default=str(common.RESULTS), help="where the JSON/markdown go (default bench/results)")
    p.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES), help="run only these")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every benchmark")
    p.add_argument(
        "--profiles",
        nargs="+",
        default=None,
        help="model profiles for train/eval/sample (cpu | paper | yaml path; default: per benchmark)",
    )
    p.add_argument(
        "--no-compile",
        dest="compile_",
        action="store_false",
        default=None,
        help="skip the torch.compile rows of the training benchmark on CUDA",
    )
    p.add_argument("--compile", dest="compile_", action="store_true", help="also torch.compile on CPU")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = common.resolve_device(a.device)
    t_start = time.perf_counter()
    summary = common.header(dev, {"small": a.small, "device": str(dev), "only": a.only, "threads": a.threads})
    summary["small"] = a.small
    _, summary["data"] = common.background_set()
    results, failed = {}, []
    for name in a.only:
        print(f"\n### {name}", flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = run_one(name, a.small, str(dev), out_dir / f"{name}.json", a.profiles, a.compile_)
        except Exception as e:  # noqa: BLE001 - record, go on with the others, fail at the end
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        results[name]["elapsed_s"] = time.perf_counter() - t0
    previous = out_dir / "summary.json"
    if set(a.only) != set(BENCHES) and previous.is_file():  # a partial run keeps the other benchmarks' results
        try:
            old = json.loads(previous.read_text()).get("results", {})
            kept = {k: v for k, v in old.items() if k not in results and k in BENCHES}
            results = {k: (results.get(k) or kept[k]) for k in BENCHES if k in results or k in kept}
            summary["kept_from_previous_summary"] = sorted(kept)
        except (OSError, ValueError):
            pass
    summary["results"] = results
    summary["targets"] = targets(results)
    summary["load_average_end"] = common.load_average()
    summary["elapsed_s"] = time.perf_counter() - t_start
    common.write_json(summary, out_dir / "summary.json")
    md = summary_markdown(summary)
    (out_dir / "summary.md").write_text(md)
    print("\n" + md)
    print(f"wrote {out_dir / 'summary.json'} and {out_dir / 'summary.md'} ({summary['elapsed_s']:.0f} s)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
