# Configuration, model lists and input functions of the pipeline (the Snakemake workflow template's
# rules/common.smk). Path patterns come from pipeline/outputs.py, job resources from
# pipeline/resources.py. Nothing here writes a file: the per-model configs are outputs of the
# rules in rules/configs.smk.
import copy
import json
import os
import re
import sys

sys.path.insert(0, workflow.basedir)
# Jobs import the project's packages from this checkout, whatever the working directory (every
# job parses this file too); no `envvars:` directive, since nothing is required from the user.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [workflow.basedir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from experiments.config import ConfigError, command_line_values, config_json, deep_merge, load_config
from experiments.config import read_config_file
from experiments.config import runtime_settings, training_config
from pipeline import outputs as OUT
from pipeline import resources as RES
from vhe.files import atomic_write_text


# --------------------------------------------------------------------------- configuration
def _load_config():
    """The chosen profile, validated; an error names where the bad value came from.

    --configfile replaces config/config.yaml (Snakemake would otherwise deep-merge the two,
    leaking paper-scale per-model settings into smoke runs); --config KEY=VALUE applies on top.
    """
    files = list(workflow.config_settings.configfiles)
    if not files:
        return load_config(copy.deepcopy(dict(config))), "config/config.yaml"
    source = ", ".join(map(str, files))
    merged = {}
    try:
        for f in files:
            merged = deep_merge(merged, read_config_file(f))
        load_config(merged)
    except ConfigError as e:
        raise WorkflowError(f"{source}: {e}") from None
    overrides = command_line_values(dict(workflow.config_settings.config or {}))
    try:
        return load_config(deep_merge(merged, overrides)), source
    except ConfigError as e:
        raise WorkflowError(f"--config {' '.join(f'{k}=...' for k in overrides)}: {e}") from None


CFG, CONFIG_SOURCE = _load_config()
config.clear()
config.update(copy.deepcopy(CFG))  # every rule file and report caption sees the resolved config

RESULTS = OUT.results_dir(CFG)
PATHS = CFG["paths"]
MODELS = OUT.models(CFG)  # name -> experiment
CLASS_MODELS = OUT.class_models(CFG)
STRUCTURED_MODELS = OUT.structured_models(CFG)
EVALUATION_CONFIG = OUT.evaluation_config_file(CFG)
# Settings that change how a job runs but not what it computes (device, W&B): handed to every job
# on its command line as `--runtime`, through the parameter `runtime=run_settings`. A parameter
# that is a function of the outputs is derived (Snakemake leaves it out of its params rerun
# trigger), so changing these settings, e.g. `--config "wandb={mode: disabled}"`, reruns nothing
# (tests/pipeline/test_dry_run.py).
RUNTIME = json.dumps(runtime_settings(CFG), sort_keys=True, separators=(",", ":"))
USES_GPU = RES.uses_gpu(CFG["device"])


def run_settings(wildcards, output):
    """The run settings as JSON for `--runtime` (a derived parameter: see above)."""
    return RUNTIME


# The interpreter of every job: the one running Snakemake (the project's .venv), or under
# --software-deployment-method conda the `python` of the rule's environment (envs/vhe.yaml).
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    PY = "python"
else:
    PY = sys.executable


def _alternation(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def caption(name):
    """A caption of the HTML report (paper_figures/report/<name>.rst, Jinja2 over snakemake.config)."""
    return os.path.join(workflow.basedir, "paper_figures", "report", f"{name}.rst")


def model_config_text(name):
    """The JSON that results/<run>/configs/<name>.json holds: what training depends on."""
    return config_json(training_config(CFG, name))


# --------------------------------------------------------------------------- data (rules/data.smk)
DATA = CFG["data"]
TEXTURES = CFG["textures"]
DATA_FILES = OUT.raw_files()
# The mirror reaches the fetch jobs through the environment (vhe.data.fetch reads
# VHE_DATA_MIRROR), not as a parameter of the rules, since where a verified file came from must not make
# Snakemake refetch it. The environment variable wins over the config key.
DATA_MIRROR = os.environ.get("VHE_DATA_MIRROR") or DATA.get("mirror")
if DATA_MIRROR:
    os.environ.update(VHE_DATA_MIRROR=os.path.abspath(DATA_MIRROR))
# Lake's protocol is 20-way; with max_characters K the first alphabet keeps min(K, 20) characters
DATA_N_WAY = OUT.within_alphabet_way(CFG)
_WITHIN = CFG["evaluation"]["within_alphabet_runs"]
DATA_N_RUNS = max(1, int(_WITHIN))  # 0 (none evaluated): build one anyway
TEXTURE_SOURCE = TEXTURES["source"]  # procedural, dtd, or a local folder/zip/tar (docs/textures.md)


def prepare_args():
    """Options of prepare-omniglot / prepare-runs: an argument list, quoted as a whole."""
    args = ["--max-characters", str(DATA["max_characters"])] if DATA.get("max_characters") else []
    return args + (["--center-ink"] if DATA.get("center_ink") else [])


def texture_input():
    """Texture images for the textured data: [] (procedural), the DTD archive, or the local source."""
    if TEXTURE_SOURCE == "procedural":
        return []
    if TEXTURE_SOURCE == "dtd":
        return [OUT.raw_file(OUT.DTD_ARCHIVE)]
    return [TEXTURE_SOURCE]


def texture_args(wildcards, input):
    """The textured rule's texture option, as an argument list: --dtd ARCHIVE, --texture-folder SOURCE or []."""
    if not input.textures:
        return []
    return ["--dtd" if TEXTURE_SOURCE == "dtd" else "--texture-folder", input.textures[0]]


# --------------------------------------------------------------------------- models
def model_threads(name):
    return RES.threads(CFG, name, USES_GPU)


def train_data(name):
    """Prepared data model `name` trains on."""
    return OUT.train_data(CFG, name)


def job_data(name):
    """Everything an evaluation job of model `name` reads of the prepared data."""
    return OUT.job_data(CFG, name)


def trained(name):
    """The marker the train rule writes when model `name` has finished."""
    return OUT.checkpoint_outputs(CFG, name)["summary"]


def final_model(name):
    """The finished run's best.pt (a declared output of the train rule)."""
    return OUT.checkpoint_outputs(CFG, name)["best"]


def final_history(name):
    """The finished run's history.csv (a declared output of the train rule)."""
    return OUT.checkpoint_outputs(CFG, name)["history"]


def structured_inputs(wildcards):
    name = wildcards.structured_model
    files = {
        "config": OUT.config_file(CFG, name),
        "evaluation": EVALUATION_CONFIG,
        "trained": trained(name),
        "model": final_model(name),
        "history": final_history(name),
        "data": job_data(name),
    }
    other = OUT.comparison_model(CFG, name)
    if other:
        files.update(
            class_config=OUT.config_file(CFG, other),
            class_trained=trained(other),
            class_model=final_model(other),
            class_history=final_history(other),
        )
    return files


def structured_extra_args(wildcards, input):
    """--class-checkpoint/--class-config of the comparison model, as an argument list."""
    if "class_model" not in input.keys():
        return []
    return ["--class-checkpoint", input.class_model, "--class-config", input.class_config]


# --------------------------------------------------------------------------- report outputs
def figure_output(stem, ext, title):
    path = f"{RESULTS}/figures/{stem}.{ext}"
    if ext != "png":
        return path  # the PDF twins are not duplicated in the report
    return report(path, caption=caption(stem), category="Figures", labels={"figure": title})


def table_output(name, title):
    return report(
        f"{RESULTS}/tables/{name}", caption=caption(name.split(".")[0]), category="Tables", labels={"table": title}
    )


# --------------------------------------------------------------------------- cluster resources
# Every job declares gpu, mem_mb, runtime (minutes) and cpus_per_task (pipeline/resources.py,
# priced by pipeline/cost.py). Local runs ignore them unless capped with --resources (e.g.
# --resources gpu=1); executor plugins such as slurm submit with them. Override one with
# --set-resources RULE:NAME=VALUE.
MEM_MB = RES.MEM_MB
FETCH_RESOURCES = RES.FETCH_RESOURCES
DATA_RESOURCES = RES.DATA_RESOURCES
CONFIG_RESOURCES = RES.CONFIG_RESOURCES


def train_runtime(wildcards, attempt):
    """Minutes for a training job; grows with the attempt (a job stopped at its limit on a node
    that lost its scratch starts over)."""
    return RES.train_minutes(CFG, wildcards.model, USES_GPU, attempt)


def eval_runtime(wildcards, attempt):
    name = getattr(wildcards, "class_model", None) or wildcards.structured_model
    return RES.eval_minutes(CFG, name, USES_GPU, attempt)


def model_mem_mb(wildcards):
    return MEM_MB["model_gpu"] if USES_GPU else MEM_MB["model_cpu"]


def gpu_resource(wildcards):
    """gpu=1 when the config's device is cuda, or auto on a machine with a GPU."""
    return 1 if USES_GPU else 0
