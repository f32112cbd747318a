# The VHE reproduction pipeline (Hewitt et al., UAI 2018, arXiv 1807.08919).
#
#   snakemake --cores 8                                    # paper scale (config/config.yaml)
#   snakemake --cores 2 --configfile config/cpu.yaml       # reduced scale, 2 CPU cores (README)
#   snakemake --cores 2 --configfile config/smoke.yaml     # minutes (CI)
#   snakemake --configfile config/smoke.yaml --report results/smoke/report.html
#
# data (rules/data.smk) -> train every model (rules/train.smk) -> metrics (rules/evaluate.smk)
# -> tables, figures, summary page (rules/figures.smk). Everything lands in results/<run>/
# (prepared data in resources/<run>/). An interrupted run resumes: rerunning redoes only what
# is missing, and the trainer continues from its last.pt (profiles/default sets
# --rerun-incomplete, so jobs that were running are redone; if Snakemake itself was killed, its
# lock remains: run `snakemake --unlock` once, then rerun). On a GPU machine add
# `--resources gpu=<number of GPUs>` so that GPU jobs do not share a device. On a cluster:
# `snakemake --profile profiles/slurm` (README, "Running on a cluster"); every rule declares its
# resources (pipeline/resources.py).
import os


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "paper_figures/report/workflow.rst"


# the resolved config, derived constants and helpers (RESULTS, PATHS, MODELS, ...)
include: "rules/common.smk"


wildcard_constraints:
    model=_alternation(MODELS),
    class_model=_alternation(CLASS_MODELS),
    structured_model=_alternation(STRUCTURED_MODELS),


# --------------------------------------------------------------------------- rules
include: "rules/configs.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        OUT.data_files(CFG),
        [OUT.checkpoint_outputs(CFG, m)["summary"] for m in MODELS],
        [OUT.metrics_file(CFG, m) for m in MODELS],
        OUT.baseline_files(CFG),
        [OUT.sample_figure(CFG, m) for m in CLASS_MODELS],
        [f for m in STRUCTURED_MODELS for f in OUT.structured_figures(CFG, m)],
        OUT.paper_figure_outputs(CFG),
