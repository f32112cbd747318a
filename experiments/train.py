"""Train one model: ``python -m experiments.train --config <model json or yaml> --out <dir>``.

The config is a per-model JSON (results/<run>/configs/<model>.json, written by the Snakefile
with experiments.config.model_config), or any profile YAML together with ``--model NAME``.
Resumes from ``<out>/last.pt`` when it exists. Writes best.pt, last.pt, config.json,
provenance.json, history.csv and train_summary.json (see experiments.trainer).

Exit status (``EXIT_*`` below; docs/INTERFACES.md):

===  =====================================================================================
0    done (completed or early-stopped)
1    training diverged (NaN/inf; the last good last.pt is kept)
2    bad config (the message names the key)
3    checkpoint refused: ``<out>/last.pt`` holds pickled objects (unsafe), is from an older
     format (the message gives the conversion command) or is not a checkpoint of this project;
     it is left untouched and nothing is trained. A last.pt that is merely unreadable
     (truncated) is moved aside and training starts afresh (experiments.trainer).
130  interrupted (SIGINT/SIGTERM; the state at the last finished step is saved to last.pt)
===  =====================================================================================

Any other error ends in a Python traceback, whose exit status is also 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

__all__ = ["main", "parse_args", "EXIT_OK", "EXIT_DIVERGED", "EXIT_CONFIG", "EXIT_CHECKPOINT", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_DIVERGED, EXIT_CONFIG, EXIT_CHECKPOINT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        required=True,
        help="per-model config (JSON/YAML with a 'model' section), or a profile YAML with --model",
    )
    p.add_argument("--out", required=True, help="checkpoint folder, e.g. results/<run>/checkpoints/<model>")
    p.add_argument("--model", default=None, help="model name, when --config is a profile with a 'models' map")
    p.add_argument("--max-steps", type=int, default=None, help="override model.train.max_steps")
    p.add_argument("--device", default=None, help="override device: auto | cpu | cuda[:i]")
    p.add_argument("--threads", type=int, default=None, help="override model.train.num_threads (torch CPU threads)")
    p.add_argument("--wandb", default=None, choices=["offline", "online", "disabled"], help="override wandb.mode")
    p.add_argument(
        "--runtime",
        default=None,
        metavar="JSON",
        help='run settings that do not change results, {"device": ..., "wandb": {...}}, applied over '
        "the config (the pipeline passes them here, not in the config file)",
    )
    p.add_argument("--quiet", action="store_true", help="only warnings on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    from .checkpoints import CheckpointFormatError
    from .config import ConfigError, load_config, model_config, with_runtime
    from .trainer import Trainer, TrainingDiverged

    try:
        cfg = load_config(args.config)
        if args.model is not None:
            cfg = model_config(cfg, args.model)
        elif "model" not in cfg:
            names = ", ".join(cfg.get("models", {}))
            raise ConfigError(f"{args.config} has no 'model' section; pass --model NAME (one of: {names})")
        cfg = with_runtime(cfg, args.runtime)
        trainer = Trainer(
            cfg, args.out, device=args.device, max_steps=args.max_steps, num_threads=args.threads, wandb_mode=args.wandb
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except CheckpointFormatError as e:  # raised by the resume from last.pt
        print(f"error: checkpoint refused: {e}", file=sys.stderr)
        return EXIT_CHECKPOINT

    def _request_stop(signum, frame):  # finish the current step, save, exit
        if trainer.interrupt_requested:
            raise KeyboardInterrupt
        trainer.interrupt_requested = True
        print(f"\nsignal {signum}: stopping after the current step and saving {trainer.paths['last']}", file=sys.stderr)

    old = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.fit()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        trainer.close_wandb()
        for s, h in old.items():
            signal.signal(s, h)
    keys = ("model", "status", "steps", "best_step", "best_val_bound", "wall_time_s", "images_per_s", "data_share")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=None))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
