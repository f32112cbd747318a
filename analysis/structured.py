"""Metrics and sample figures of the structured models (hierarchical, factorial).

    python -m analysis.structured --config results/<run>/configs/<model>.json \\
        --checkpoint results/<run>/checkpoints/<model>/best.pt \\
        --out results/<run>/metrics/<model>.json --figures results/<run>/figures \\
        [--class-checkpoint results/<run>/checkpoints/vhe_deconv/best.pt \\
         --class-config results/<run>/configs/vhe_deconv.json]

Dispatches on ``cfg["model"]["experiment"]``. Figure stems are ``<prefix>_<name>`` with prefix
the experiment name (or the model name when it differs, as pipeline.outputs does), each
written as PNG and PDF into ``--figures``:

hierarchical (``hierarchical_samples``): for a few held-out (evaluation) alphabets, the first row
    shows one image of each of a few of the alphabet's characters; a ~ q(a | D_a) with D_a = all
    images of those characters; each following row is one new character c ~ p(c | a), drawn
    several times (x ~ p(x | c, z), z ~ p(z)); the last row shows real characters of the same
    alphabet that were not given, for comparison.
    Metrics: ``bound_per_image``: the training objective (VHE bound, kl_factor 1, the model's own
    resample/rescale) averaged over episodes whose targets are evaluation images and whose
    support sets come from the evaluation set (D_a: 10 images of the target's alphabet, D_c:
    k_shot images of its character), in nats per image, with its standard error and the mean
    KL per latent; the same bound for the class-structured model of ``--class-checkpoint`` on
    the same targets (its own k_shot and objective), their paired difference and
    ``alphabet_improves_bound`` (hierarchical bound > class bound; ``class_model.same_training_steps``
    says whether both checkpoints come from the same training step). Also (``--n-samples`` > 0) the
    importance-sampled -log p(X)/|X| of ``nll_classes`` whole evaluation characters under both
    models (a and c class-level, inferred from the character's own images only; K stated) and the
    paired improvement (class minus hierarchical). ``alphabet_style`` (see :func:`alphabet_style`):
    the share of new characters c ~ p(c | a) that an alphabet classifier trained on real images
    assigns to the alphabet a was inferred from (chance 1 / #alphabets, and the classifier's
    accuracy on real characters it never saw as the ceiling). ``context_nll`` and ``oneshot_context``:
    the alphabet-context measures (analysis.hierarchical). Their settings come from
    ``evaluation.structured`` (``context_images``: |C|, null = train.k_shot_alphabet; ``nll_classes``;
    ``oneshot_ways``; ``oneshot_episodes``: episodes per alphabet; ``style_alphabet_samples``: draws
    of a per alphabet in ``alphabet_style``; ``style_new``: new characters per draw); the flags
    ``--context-images``, ``--nll-classes``, ``--oneshot-ways``, ``--oneshot-episodes``,
    ``--style-alphabet-samples`` and ``--style-new`` override them.

factorial (``factorial_grid``, ``factorial_swap``, and ``factorial_samples`` = both side by side,
    the file the pipeline tracks): the grid's rows take the content from one image each
    (c ~ q(c | row image)), its columns the style (t ~ q(t | column image)), cells are samples
    x ~ p(x | c, t, z) with z ~ p(z); the swap figure shows pairs (A, B) and the samples with
    (content A, style B) and (content B, style A). Rows and columns come from the held-out
    (validation) characters of the textured set (all characters when it has too few).
    Metrics (``texture`` / ``character``): every cell of a larger grid (up to
    ``--metric-rows`` content images x one style image per texture) is classified:
    its texture by a logistic regression on Fourier-magnitude features (translation invariant)
    trained on the real training-split images' texture labels, its character by the nearest
    neighbour (cosine, blurred pixels: the silhouette, blind to the texture) among all real images
    of the grid's row characters (an R-way choice). Reported: accuracy against the column's texture /
    the row's character, chance (1 / #textures, 1 / R), the classifiers' accuracy on
    real held-out images (their ceiling), and copy baselines (the row image's own texture
    prediction vs the column texture; the column image's character vs the row character).

Everything is seeded by ``--seed`` (default ``evaluation.seed``). The JSON is written atomically
and carries provenance (git commit, torch version, date, seed, command).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from experiments.artifacts import provenance
from vhe.files import write_json

import torch

from .structured_common import (
    STRUCTURED_EXPERIMENTS,
    ancestral,
    episode_bounds,
    figure_prefix,
    fit_logistic,
    load_model,
    shape_features,
    texture_features,
)
from .factorial import run_factorial
from .hierarchical import alphabet_style, matched_step_bounds, run_hierarchical

log = logging.getLogger("analysis.structured")

__all__ = [
    "main",
    "parse_args",
    "load_model",
    "ancestral",
    "episode_bounds",
    "run_hierarchical",
    "run_factorial",
    "alphabet_style",
    "texture_features",
    "shape_features",
    "fit_logistic",
    "figure_prefix",
    "matched_step_bounds",
    "structured_settings",
    "STRUCTURED_SETTINGS",
]


# ============================================================================ CLI
#: the settings of evaluation.structured, each with its command-line flag (the flag's value wins when given)
STRUCTURED_SETTINGS = (
    "context_images",
    "nll_classes",
    "oneshot_ways",
    "oneshot_episodes",
    "style_alphabet_samples",
    "style_new",
)


def _at_least(lowest: int):
    """An argparse type: an integer >= ``lowest``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if n < lowest:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {n}")
        return n

    return parse


def structured_settings(args: argparse.Namespace, ev: dict) -> argparse.Namespace:
    """``args`` with every :data:`STRUCTURED_SETTINGS` flag that was not given taken from the
    evaluation settings ``ev`` (``evaluation.structured``, filled by the schema's defaults;
    ``context_images`` may stay None: as many as the a encoder saw in training). Returns ``args``."""
    section = ev["structured"]
    for key in STRUCTURED_SETTINGS:
        if getattr(args, key) is None:
            setattr(args, key, section[key])
    return args


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m analysis.structured", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="per-model config JSON (results/<run>/configs/<model>.json)")
    p.add_argument(
        "--evaluation",
        default=None,
        help="JSON/YAML with the evaluation section (replaces the config's; the pipeline's configs/evaluation.json)",
    )
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (best.pt)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--figures", required=True, help="figures folder (results/<run>/figures)")
    p.add_argument("--class-checkpoint", default=None, help="hierarchical: class-structured model to compare with")
    p.add_argument("--class-config", default=None, help="its per-model config (default: the one in the checkpoint)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:i] (default: the config's)")
    p.add_argument(
        "--runtime",
        default=None,
        metavar="JSON",
        help='run settings {"device": ..., "wandb": {...}} applied over the config (the pipeline passes '
        "them here, not in the config file)",
    )
    p.add_argument("--seed", type=int, default=None, help="default: evaluation.seed")
    p.add_argument("--batch-size", type=int, default=64, help="episodes per batch when scoring")
    p.add_argument(
        "--max-classes",
        type=int,
        default=None,
        help="hierarchical: evaluation characters whose images are targets "
        "(default: evaluation.max_classes; none: all)",
    )
    p.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="hierarchical: K for -log p(X) per character (default: evaluation.n_samples; 0 skips)",
    )
    p.add_argument(
        "--nll-classes",
        type=_at_least(1),
        default=None,
        help="hierarchical: evaluation characters for -log p(X) (each costs K x 20 decodes per model; "
        "default: evaluation.structured.nll_classes)",
    )
    p.add_argument("--n-alphabets", type=int, default=4, help="hierarchical: alphabets in the figure")
    p.add_argument("--n-shown", type=int, default=5, help="hierarchical: given characters per alphabet (D_a)")
    p.add_argument("--n-new", type=int, default=5, help="hierarchical: new characters per alphabet")
    p.add_argument("--n-draws", type=int, default=6, help="hierarchical: draws of each new character")
    p.add_argument(
        "--style-new",
        type=_at_least(1),
        default=None,
        help="hierarchical: new characters per draw of a in the alphabet-style check "
        "(default: evaluation.structured.style_new)",
    )
    p.add_argument(
        "--context-images",
        type=_at_least(1),
        default=None,
        help="hierarchical: |C|, context images of an alphabet's other characters (context_nll, oneshot_context; "
        "default: evaluation.structured.context_images, whose null is train.k_shot_alphabet)",
    )
    p.add_argument(
        "--oneshot-ways",
        type=_at_least(2),
        default=None,
        help="hierarchical: ways of the within-alphabet one-shot episodes (default: evaluation.structured.oneshot_ways)",
    )
    p.add_argument(
        "--oneshot-episodes",
        type=_at_least(1),
        default=None,
        help="hierarchical: within-alphabet one-shot episodes per alphabet (default: evaluation.structured.oneshot_episodes)",
    )
    p.add_argument(
        "--style-alphabet-samples",
        type=_at_least(1),
        default=None,
        help="hierarchical: draws of a per alphabet in the alphabet-style check "
        "(default: evaluation.structured.style_alphabet_samples)",
    )
    p.add_argument("--grid-rows", type=int, default=6, help="factorial: content images in the grid figure")
    p.add_argument("--grid-cols", type=int, default=8, help="factorial: style images in the grid figure")
    p.add_argument("--swap-pairs", type=int, default=6, help="factorial: pairs in the swap figure")
    p.add_argument("--metric-rows", type=int, default=40, help="factorial: content images in the metric grid")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def _log_wandb(cfg, m, out: dict, checkpoint) -> None:
    """The evaluation as the model's W&B eval run, in its training run's group
    (experiments.tracking.log_evaluation; nothing when disabled)."""
    from experiments import tracking

    if not tracking.enabled(cfg):
        return
    from vhe.files import json_ready

    from .metric_rows import structured_rows

    info = {k: m.get(k) for k in ("experiment", "objective", "decoder")}
    rows = structured_rows(m.get("name"), info, json_ready(out), "evaluation")
    images = {f"eval/{Path(p).stem}": p for p in out.get("figures") or [] if str(p).endswith(".png")}
    tracking.log_evaluation(cfg, m.get("name"), checkpoint, rows, images)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    from experiments.common import model_section, resolve_device
    from experiments.config import ConfigError, evaluation_for, load_config, with_runtime

    try:
        cfg = with_runtime(load_config(args.config, evaluation=args.evaluation), args.runtime)
        m = model_section(cfg)
    except (ConfigError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    exp_name = m["experiment"]
    if exp_name not in STRUCTURED_EXPERIMENTS:
        print(
            f"error: analysis.structured handles hierarchical and factorial models; {m.get('name')!r} is "
            f"{exp_name!r} (use analysis.evaluate)",
            file=sys.stderr,
        )
        return 2
    ev = evaluation_for(cfg, m["decoder"])
    if args.seed is None:
        args.seed = int(ev["seed"])
    if args.n_samples is None:
        args.n_samples = int(ev["n_samples"])
    structured_settings(args, ev)
    args.figures = Path(args.figures)
    device = resolve_device(args.device if args.device is not None else cfg.get("device", "auto"))
    torch.manual_seed(args.seed)
    model, ckpt = load_model(cfg, args.checkpoint, device)
    log.info("%s: %s model from %s (step %s)", m.get("name"), exp_name, args.checkpoint, ckpt.get("step"))
    if exp_name == "hierarchical":
        res = run_hierarchical(cfg, model, args, device)
    else:
        res = run_factorial(cfg, model, args, device)
    step = ckpt.get("step") if isinstance(ckpt, dict) else None
    if isinstance(res.get("class_model"), dict):  # a bound comparison is fair only at equal training
        res["class_model"]["same_training_steps"] = step is not None and step == res["class_model"]["checkpoint_step"]
        if getattr(args, "class_checkpoint", None):
            res["class_model"]["val_bound_at_matched_step"] = matched_step_bounds(
                Path(args.checkpoint).parent / "history.csv", Path(args.class_checkpoint).parent / "history.csv"
            )
    out = {
        "model": m.get("name"),
        "experiment": exp_name,
        "objective": m.get("objective"),
        "decoder": m.get("decoder"),
        "checkpoint": str(args.checkpoint),
        "checkpoint_step": step,
        "units": "bounds and -log p in nats per image (bounds: higher is better); KL in nats; accuracies in [0, 1]",
        **res,
        "provenance": provenance(cfg, device, args.seed),
    }
    write_json(out, Path(args.out))
    _log_wandb(cfg, m, out, args.checkpoint)
    log.info("wrote %s and %d figure files", args.out, len(res.get("figures", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
