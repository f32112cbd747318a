# The VHE reproduction pipeline (Hewitt et al., UAI 2018, arXiv 1807.08919).
#
#   snakemake --cores 8                                    # paper scale (config/config.yaml)
#   snakemake --cores 2 --configfile config/cpu.yaml       # about an hour on 2 CPU cores
#   snakemake --cores 2 --configfile config/smoke.yaml     # minutes (CI)
#   snakemake --configfile config/smoke.yaml --report results/smoke/report.html
#
# data (rules/data.smk) -> train every model (rules/train.smk) -> metrics (rules/evaluate.smk)
# -> tables, figures, summary page (rules/figures.smk). Everything lands in results/<run>/
# (prepared data in resources/<run>/). An interrupted run resumes: rerunning redoes only what
# is missing, and the trainer continues from its last.pt (if Snakemake was stopped while jobs
# ran, it asks for --rerun-incomplete: add it to rerun those jobs). On a GPU machine add
# `--resources gpu=<number of GPUs>` so that GPU jobs do not share a device.
import copy
import os
import re
import shlex
import sys

sys.path.insert(0, workflow.basedir)
# jobs import the project's packages from this checkout, whatever the working directory
os.environ["PYTHONPATH"] = os.pathsep.join(
    [workflow.basedir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)

from snakemake.exceptions import WorkflowError

from experiments.config import ConfigError, dump_json_if_changed, load_config, model_config, training_config
from paper_figures import outputs as OUT


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "paper_figures/report/workflow.rst"


# --------------------------------------------------------------------------- configuration
def _raw_config():
    """The chosen profile: --configfile replaces config/config.yaml (Snakemake would otherwise
    deep-merge the two, leaking paper-scale per-model settings into smoke runs); --config
    key=value overrides apply on top either way."""
    if workflow.config_settings.configfiles:
        return copy.deepcopy(dict(workflow.config_settings.overwrite_config))
    return copy.deepcopy(dict(config))


_CONFIG_SOURCE = ", ".join(map(str, workflow.config_settings.configfiles)) or "config/config.yaml"
try:
    CFG = load_config(_raw_config())
except ConfigError as e:
    raise WorkflowError(f"{_CONFIG_SOURCE}: {e}") from None

# the included rule files (rules/data.smk among them) see the resolved, validated config
config.clear()
config.update(copy.deepcopy(CFG))

RUN = CFG["run"]
RESULTS = OUT.results_dir(CFG)
PATHS = CFG["paths"]
MODELS = OUT.models(CFG)  # name -> experiment
CLASS_MODELS = OUT.class_models(CFG)
STRUCTURED_MODELS = OUT.structured_models(CFG)

# one self-contained JSON per model, rewritten only when its content changes: editing one
# model's section retrains only that model (the training rule depends on this file, not on
# the profile YAML)
for _name in MODELS:
    dump_json_if_changed(training_config(CFG, _name), f"{RESULTS}/configs/{_name}.json")
# evaluation settings live in their own file: changing K or the episodes re-evaluates, never retrains
EVALUATION_CONFIG = f"{RESULTS}/configs/evaluation.json"
dump_json_if_changed(CFG["evaluation"], EVALUATION_CONFIG)


# --------------------------------------------------------------------------- helpers
def _alternation(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    model=_alternation(MODELS),
    class_model=_alternation(CLASS_MODELS),
    structured_model=_alternation(STRUCTURED_MODELS),


def uses_gpu():
    """True when jobs run on CUDA: device cuda[:i], or auto on a machine with a GPU."""
    device = CFG["device"]
    if device.startswith("cuda"):
        return True
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


USES_GPU = uses_gpu()
GPU = 1 if USES_GPU else 0


def model_threads(name):
    """Threads of one training/evaluation job: the model's train.num_threads when set, else
    1 on CPU (small convnets: parallel jobs beat intra-op threads) and 2 beside a GPU."""
    n = model_config(CFG, name)["model"]["train"].get("num_threads")
    return int(n) if n else (2 if USES_GPU else 1)


def model_config_file(name):
    return f"{RESULTS}/configs/{name}.json"


def train_data(name):
    """Prepared data a model trains on."""
    return [PATHS["textured"]] if MODELS[name] == "factorial" else [PATHS["background"]]


def eval_data(name):
    """Prepared data a model is evaluated on."""
    exp = MODELS[name]
    if exp == "factorial":
        return [PATHS["textured"]]
    if exp == "hierarchical":
        return [PATHS["evaluation"]]
    files = [PATHS["evaluation"]]
    ev = CFG["evaluation"]
    if ev["lake_runs"]:
        files.append(PATHS["lake_runs"])
    if ev["within_alphabet_runs"]:
        files.append(PATHS["within_alphabet_runs"])
    return files


PY = sys.executable  # the interpreter running Snakemake (the project's .venv)


def caption(name):
    """A caption of the HTML report (paper_figures/report/<name>.rst)."""
    return os.path.join(workflow.basedir, "paper_figures", "report", f"{name}.rst")


# --------------------------------------------------------------------------- rules
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"


rule all:
    input:
        DATA_TARGETS,
        [OUT.checkpoint_outputs(CFG, m)["summary"] for m in MODELS],
        [OUT.metrics_file(CFG, m) for m in MODELS],
        OUT.baseline_files(CFG),
        [OUT.sample_figure(CFG, m) for m in CLASS_MODELS],
        [f for m in STRUCTURED_MODELS for f in OUT.structured_figures(CFG, m)],
        OUT.paper_figure_outputs(CFG),
    default_target: True
