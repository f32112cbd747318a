"""Render the paper's tables and figures and a summary page from one run's metrics.

    python -m paper_figures.make --run-dir results/<run>

Reads ``<run-dir>/metrics/*.json`` (by the exact keys the evaluators define), ``configs/*.json``
(which model is which) and ``checkpoints/*/{final/history.csv,train_summary.json}``
(:mod:`paper_figures.metrics`) and writes, all derived from one long-form table:

- ``tables/metrics.csv``: every number of every model and baseline (one row each);
- ``tables/objectives.{csv,md,tex}``, ``tables/classification.{csv,md,tex}``,
  ``tables/structured.{csv,md,tex}``, ``tables/claims.{csv,md}``, ``tables/learning_curves.{csv,md}``,
  ``tables/seeds.{csv,md}`` (models trained with several seeds), ``tables/families.{csv,md}`` (vector
  against spatial network family, pair by pair; empty without spatial models)
  (:mod:`paper_figures.tables`, :mod:`paper_figures.claims`, :mod:`paper_figures.families`);
- ``figures/{training_curves,learning_curves,kl_c,samples_montage}.{png,pdf}``
  (:mod:`paper_figures.figures`);
- ``summary.md`` and ``summary.html`` (:mod:`paper_figures.summary`).

Models without metrics show as "n/a"; a metrics file that is not a JSON object, lacks a key its
evaluator defines or holds a non-number where a number belongs is an error naming file and key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline import outputs as OUT
from vhe.files import atomic_write_text

from . import claims as CLAIMS
from . import families as FAMILIES
from . import figures as FIG
from . import summary as SUMMARY
from . import tables as T
from .metrics import MetricsError, RunData, metrics_frame, read_run


def make(run_dir, wandb_mode: str | None = None, runtime: dict | None = None) -> RunData:
    """Write every table, figure and the summary page of ``run_dir`` and log them to W&B (the
    ``wandb`` settings of ``runtime`` — the pipeline's run settings — else of the models' configs,
    ``wandb_mode`` overriding); returns what was read."""
    run = read_run(run_dir)
    if runtime and runtime.get("wandb") is not None:
        run.wandb = {"settings": runtime["wandb"], "run": run.name}
    tables, figures = run.run_dir / "tables", run.run_dir / "figures"
    df = metrics_frame(run)
    atomic_write_text(df.to_csv(index=False), tables / "metrics.csv")
    headline, reason = CLAIMS.choose_headline(df, exclude=run.replicate_of)  # on the models' own seeds

    obj_csv, obj_disp, obj_note = T.objectives(run, df, headline)
    T.write_table(
        obj_disp, tables, "objectives", title=f"Objectives x decoders (run {run.name})", note=obj_note, csv=obj_csv
    )
    cls_disp, cls_note = T.classification(run, df, headline, reason)
    T.write_table(
        cls_disp,
        tables,
        "classification",
        title=f"One-shot classification (run {run.name})",
        note=cls_note,
        csv=T.classification_long(run, df, headline),
    )
    st_csv, st_disp, st_note = T.structured(run, df)
    T.write_table(
        st_disp,
        tables,
        "structured",
        title=f"Hierarchical and factorial models (run {run.name})",
        note=st_note,
        csv=st_csv,
    )
    claims = CLAIMS.check_claims(run, df, headline)
    T.write_table(
        claims, tables, "claims", title=f"Claims of the paper checked on run {run.name}", formats=("csv", "md")
    )
    seeds_csv, seeds_disp, seeds_note = T.seeds_table(run, df, headline)
    T.write_table(
        seeds_disp,
        tables,
        "seeds",
        title=f"Models trained with several seeds (run {run.name})",
        note=seeds_note,
        csv=seeds_csv,
        formats=("csv", "md"),
    )
    fam_csv, fam_disp, fam_note = FAMILIES.families(run, df, headline)
    T.write_table(
        fam_disp,
        tables,
        "families",
        title=f"Network families: vector against spatial (run {run.name})",
        note=fam_note,
        csv=fam_csv,
        formats=("csv", "md"),
    )
    curves = T.learning_curves(run)
    atomic_write_text(curves.to_csv(index=False), tables / "learning_curves.csv")
    lc_disp, lc_note = T.learning_curve_table(curves)
    T.write_table(
        lc_disp, tables, "learning_curves", title=f"Learning curves (run {run.name})", note=lc_note, formats=("md",)
    )

    FIG.save_all(run, df, curves, figures, OUT.FIGURE_FORMATS)
    SUMMARY.write(
        run,
        SUMMARY.Tables(
            objectives=obj_disp,
            objectives_note=obj_note,
            classification=cls_disp,
            classification_note=cls_note,
            headline=T.headline_label(headline),
            headline_reason=reason,
            claims=claims,
            structured=st_disp,
            training=T.training(run),
            learning_curves=lc_disp,
            learning_curves_note=lc_note,
            seeds=seeds_disp,
            seeds_note=seeds_note,
        ),
    )
    log_wandb(
        run,
        {
            "objectives": obj_disp,
            "classification": cls_disp,
            "claims": claims,
            "structured": st_disp,
            "seeds": seeds_disp,
            "families": fam_disp,
            "metrics": df,
        },
        {
            "headline_estimator": T.headline_label(headline),
            "headline_reason": reason,
            **{f"headline_estimator/{d}": e for d, e in headline.items()},
        },
        wandb_mode,
    )
    return run


def tracking_config(run: RunData, mode: str | None = None) -> dict | None:
    """The W&B settings of the run's models (their per-model configs), ``mode`` overriding; None if none."""
    if run.wandb is None:
        return None
    wb = {**run.wandb["settings"], **({"mode": mode} if mode else {})}
    return {"wandb": wb, "run": run.wandb["run"], "paths": {"results": str(run.run_dir)}}


def log_wandb(run: RunData, tables: dict, summary: dict, mode: str | None = None) -> None:
    """The profile's tables (``wandb.Table``), headline and figures in the W&B run ``<run>/summary``
    (``job_type="summary"``; its id derived from the results folder and run name, resumed: a rerun
    updates the same run, ``experiments.tracking.summary_run_id``); nothing when W&B is disabled."""
    cfg = tracking_config(run, mode)
    from experiments import tracking

    if cfg is None or not tracking.enabled(cfg):
        return

    wb = tracking.open_run(cfg, "summary", job_type="summary", run_id=tracking.summary_run_id(cfg))
    if wb is None:
        return
    tracking.log_tables(wb, tables)
    tracking.log_summary(wb, summary)
    figures = run.run_dir / "figures"
    tracking.log_images(wb, {stem: figures / f"{stem}.png" for stem in OUT.FIGURES})
    tracking.finish(wb)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figures.make", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True, help="results/<run>")
    ap.add_argument(
        "--wandb-mode",
        choices=["offline", "online", "disabled"],
        default=None,
        help="override the models' wandb.mode for the summary run",
    )
    ap.add_argument(
        "--runtime",
        default=None,
        metavar="JSON",
        help='run settings {"device": ..., "wandb": {...}} (the pipeline passes them here)',
    )
    args = ap.parse_args(argv)
    try:
        runtime = json.loads(args.runtime) if args.runtime else None
        if runtime is not None and not isinstance(runtime, dict):
            raise ValueError("--runtime must be a JSON object")
    except ValueError as e:
        print(f"error: --runtime: {e}", file=sys.stderr)
        return 2
    try:
        run = make(args.run_dir, args.wandb_mode, runtime)
    except (MetricsError, FileNotFoundError) as e:
        print(f"paper_figures.make: error: {e}", file=sys.stderr)
        return 1
    rd = Path(args.run_dir)
    print(
        f"paper_figures.make: {len([n for n in run.models if n in run.raw])} model metrics, "
        f"{len(run.histories)} histories -> {rd / 'tables'}, {rd / 'figures'}, {rd / 'summary.md'}, "
        f"{rd / 'summary.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
