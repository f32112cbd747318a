#!/usr/bin/env python
"""Check that a pipeline run left every expected output behind.

    python scripts/check_outputs.py --configfile config/smoke.yaml [--report results/smoke/report.html]
    python scripts/check_outputs.py --configfile config/smoke.yaml --list     # just print the list
    python scripts/check_outputs.py --configfile config/smoke.yaml --wandb    # also W&B's offline runs

The expected files for a config (prepared data, every model's config, best.pt, history.csv,
train_summary.json and metrics JSON, the sample figures, the structured grids, the tables,
figures and the summary page) come from ``pipeline.outputs.expected_outputs``, the same
list the Snakefile's ``all`` rule builds. With ``--wandb`` (and ``wandb.mode`` offline), the
offline W&B files must also hold, for every model, its training history and its evaluation
(``experiments.tracking.missing_tracking``), and the profile's summary run. Exits 1 naming every
missing or empty file or W&B gap, 2 on a bad config.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def expected(configfile, root: Path) -> list[Path]:
    from experiments.config import load_config
    from pipeline.outputs import expected_outputs

    cfg = load_config(configfile)
    return [root / p for p in expected_outputs(cfg)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", required=True, help="the profile the pipeline ran with")
    ap.add_argument("--root", default=".", help="the pipeline's working directory (default: .)")
    ap.add_argument("--report", action="append", default=[], help="also expect this file (e.g. the HTML report)")
    ap.add_argument("--list", action="store_true", help="print the expected files and exit")
    ap.add_argument("--wandb", action="store_true", help="also check W&B's offline runs (training + evaluation)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    try:
        files = expected(args.configfile, root)
    except Exception as e:  # ConfigError, missing file, ...
        print(f"check_outputs: cannot read the config {args.configfile}: {e}", file=sys.stderr)
        return 2
    files += [root / r for r in args.report]
    if args.list:
        print("\n".join(str(f) for f in files))
        return 0
    missing = [f for f in files if not f.is_file()]
    empty = [f for f in files if f.is_file() and os.path.getsize(f) == 0]
    if missing or empty:
        print(f"check_outputs: {len(missing)} missing and {len(empty)} empty of {len(files)} expected outputs "
              f"({args.configfile}):", file=sys.stderr)
        for f in missing:
            print(f"  missing: {f}", file=sys.stderr)
        for f in empty:
            print(f"  empty:   {f}", file=sys.stderr)
        return 1
    print(f"check_outputs: all {len(files)} expected outputs present ({args.configfile})")
    if args.wandb:
        return check_wandb(args.configfile, root)
    return 0


def check_wandb(configfile, root: Path) -> int:
    from experiments.config import load_config
    from experiments.tracking import missing_tracking
    from pipeline.outputs import models, results_dir

    cfg = load_config(configfile)
    if cfg["wandb"]["mode"] != "offline":
        print(f"check_outputs: W&B mode is {cfg['wandb']['mode']!r}: no offline runs to check")
        return 0
    gaps = missing_tracking(root / results_dir(cfg) / "wandb", cfg["run"], list(models(cfg)))
    if gaps:
        print(f"check_outputs: {len(gaps)} W&B gaps:", file=sys.stderr)
        for g in gaps:
            print(f"  {g}", file=sys.stderr)
        return 1
    print(f"check_outputs: W&B offline runs hold training and evaluation for all {len(models(cfg))} models "
          f"and the summary run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
