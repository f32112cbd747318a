"""Train one model: ``python -m experiments.train --config <model json or yaml> --out <dir>``.

The config is a per-model JSON (results/<run>/configs/<model>.json, written by the Snakefile
with experiments.config.model_config), or any profile YAML together with ``--model NAME``.
Resumes from ``<out>/last.pt`` when it exists. Writes best.pt, last.pt, config.json,
provenance.json, history.csv and train_summary.json (see experiments.trainer).

Exit status: 0 done (completed or early-stopped), 1 training diverged (NaN/inf), 2 bad config,
130 interrupted (SIGINT/SIGTERM; the state at the last finished step is saved to last.pt).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

__all__ = ["main", "parse_args"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="per-model config (JSON/YAML with a 'model' section), or a profile "
                                                   "YAML with --model")
    p.add_argument("--out", required=True, help="checkpoint folder, e.g. results/<run>/checkpoints/<model>")
    p.add_argument("--model", default=None, help="model name, when --config is a profile with a 'models' map")
    p.add_argument("--max-steps", type=int, default=None, help="override model.train.max_steps")
    p.add_argument("--device", default=None, help="override device: auto | cpu | cuda[:i]")
    p.add_argument("--threads", type=int, default=None, help="override model.train.num_threads (torch CPU threads)")
    p.add_argument("--wandb", default=None, choices=["offline", "online", "disabled"], help="override wandb.mode")
    p.add_argument("--quiet", action="store_true", help="only warnings on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from .config import ConfigError, load_config, model_config
    from .trainer import Trainer, TrainingDiverged

    try:
        cfg = load_config(args.config)
        if args.model is not None:
            cfg = model_config(cfg, args.model)
        elif "model" not in cfg:
            names = ", ".join(cfg.get("models", {}))
            raise ConfigError(f"{args.config} has no 'model' section; pass --model NAME (one of: {names})")
        trainer = Trainer(cfg, args.out, device=args.device, max_steps=args.max_steps, num_threads=args.threads,
                          wandb_mode=args.wandb)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def _request_stop(signum, frame):  # finish the current step, save, exit
        if trainer.interrupt_requested:
            raise KeyboardInterrupt
        trainer.interrupt_requested = True
        print(f"\nsignal {signum}: stopping after the current step and saving {trainer.paths['last']}",
              file=sys.stderr)

    old = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.fit()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    finally:
        trainer.close_wandb()
        for s, h in old.items():
            signal.signal(s, h)
    keys = ("model", "status", "steps", "best_step", "best_val_bound", "wall_time_s", "images_per_s", "data_share")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
