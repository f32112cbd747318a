# Configuration, derived constants and helpers of the pipeline (the Snakemake workflow template's
# rules/common.smk). Included first by the Snakefile; the other rule files only use what is
# defined here and `rules.<name>.output`.
import copy
import functools
import math
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
# Jobs import the project's packages from this checkout, whatever the working directory. Set
# here (and again in every job, which parses this file too), not required from the user, hence
# no `envvars:` directive.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [workflow.basedir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from experiments.config import ConfigError, dump_json_if_changed, load_config, model_config, training_config
from pipeline import outputs as OUT


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

# every rule file sees the resolved, validated config
config.clear()
config.update(copy.deepcopy(CFG))

RUN = CFG["run"]
RESULTS = OUT.results_dir(CFG)
PATHS = CFG["paths"]
MODELS = OUT.models(CFG)  # name -> experiment
CLASS_MODELS = OUT.class_models(CFG)
STRUCTURED_MODELS = OUT.structured_models(CFG)

# one self-contained JSON per model, rewritten only when its content changes: editing one
# model's section retrains only that model (training depends on this file, not on the profile YAML)
for _name in MODELS:
    dump_json_if_changed(training_config(CFG, _name), f"{RESULTS}/configs/{_name}.json")
# evaluation settings live in their own file: changing K or the episodes re-evaluates, never retrains
EVALUATION_CONFIG = f"{RESULTS}/configs/evaluation.json"
dump_json_if_changed(CFG["evaluation"], EVALUATION_CONFIG)

# The interpreter of every job, passed to the rules as a parameter. It is the one running
# Snakemake (the project's .venv), or under --software-deployment-method conda the `python` of
# the rule's environment (envs/vhe.yaml).
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    PY = "python"
else:
    PY = sys.executable


def _alternation(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def shell_quote(x):
    """Shell-quote one value for a rule parameter."""
    return shlex.quote(str(x))


def caption(name):
    """A caption of the HTML report (paper_figures/report/<name>.rst)."""
    return os.path.join(workflow.basedir, "paper_figures", "report", f"{name}.rst")


# --------------------------------------------------------------------------- data (rules/data.smk)
# Raw files go to resources/raw/ (shared by all runs), prepared data to PATHS (resources/<run>/).
DATA_MANIFEST = os.path.join(workflow.basedir, "vhe", "data", "MANIFEST.tsv")
DATA_FILES = [line.split("\t", 1)[0] for line in Path(DATA_MANIFEST).read_text().splitlines()[1:] if line.strip()]
_DATA_CFG = CFG.get("data") or {}
_DATA_TEX = CFG.get("textures") or {}
# The mirror reaches the fetch jobs through the environment (vhe.data.fetch and fetch-dtd read
# VHE_DATA_MIRROR), not as a parameter of the rules. Where a verified file came from must not make
# Snakemake refetch it and rerun everything downstream when the mirror is set or unset. The
# environment variable wins over the config key; it is optional, hence no `envvars:` directive.
DATA_MIRROR = os.environ.get("VHE_DATA_MIRROR") or _DATA_CFG.get("mirror") or None
if DATA_MIRROR:
    os.environ.update(VHE_DATA_MIRROR=str(Path(DATA_MIRROR).resolve()))
_DATA_MAXC = _DATA_CFG.get("max_characters")
DATA_MAXC_ARG = f"--max-characters {int(_DATA_MAXC)}" if _DATA_MAXC else ""
# data.center_ink: every 28x28 image (training, evaluation, Lake's runs) with its ink centroid moved
# to the centre; the 105x105 originals of the baselines stay as they are
DATA_CENTER_ARG = "--center-ink" if _DATA_CFG.get("center_ink") else ""
# Lake's protocol is 20-way; with --max-characters K the first alphabet keeps min(K, 20) characters
DATA_N_WAY = int(_DATA_CFG.get("n_way") or min(20, int(_DATA_MAXC) if _DATA_MAXC else 20))
_DATA_WITHIN = (CFG.get("evaluation") or {}).get("within_alphabet_runs")
DATA_N_RUNS = max(1, int(20 if _DATA_WITHIN is None else _DATA_WITHIN))  # 0 (none evaluated): build one anyway
DATA_SEED = int(CFG.get("seed", 0))

# Textures (docs/textures.md): procedural (generated in code); dtd: torchvision's DTD archive,
# fetched into resources/raw/ by the fetch_dtd rule (existing file, mirror, else download;
# md5-verified); anything else: a local folder/zip/tar of images.
DATA_TEXTURE_SOURCE = _DATA_TEX.get("source") or "procedural"
DTD_ARCHIVE = "dtd-r1.0.1.tar.gz"  # torchvision.datasets.DTD's archive (vhe.data.textures.dtd_archive_name)
DATA_TEXTURE_ARGS = {
    "n_textures": int(_DATA_TEX.get("n_textures", 8)),
    "n_per_character": int(_DATA_TEX.get("n_per_character", 4)),
    "dilate": int(_DATA_TEX.get("dilate", 1)),
}


def raw_file(name):
    """resources/raw/<name>, as the fetch_raw rule writes it."""
    return expand(rules.fetch_raw.output[0], file=name)[0]


def texture_input():
    """Texture images for the textured data: [] (procedural), the DTD archive, or the local
    source."""
    if DATA_TEXTURE_SOURCE == "procedural":
        return []
    if DATA_TEXTURE_SOURCE == "dtd":
        return rules.fetch_dtd.output
    return [DATA_TEXTURE_SOURCE]


def texture_args(wildcards, input):
    """The textured rule's texture option: --dtd ARCHIVE, --texture-folder SOURCE or nothing."""
    if not input.textures:
        return ""
    flag = "--dtd" if DATA_TEXTURE_SOURCE == "dtd" else "--texture-folder"
    return f"{flag} {shell_quote(input.textures[0])}"


def lake_zip_args(wildcards, input):
    return " ".join(f"--lake-zip {shell_quote(z)}" for z in input.lake)


# --------------------------------------------------------------------------- models
def uses_gpu():
    """True when jobs run on CUDA: device cuda[:i], or auto on a machine with a GPU (decided
    where Snakemake runs: on a cluster's login node without GPUs, set device: cuda)."""
    device = CFG["device"]
    if device.startswith("cuda"):
        return True
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available()


USES_GPU = uses_gpu()
GPU = 1 if USES_GPU else 0


@functools.lru_cache(maxsize=None)
def model_settings(name):
    """The model's resolved entry (experiment, decoder, nets, train), as trained."""
    return model_config(CFG, name)["model"]


def model_threads(name):
    """Threads of one training/evaluation job: the model's train.num_threads when set, else
    1 on CPU (small convnets: parallel jobs beat intra-op threads) and 2 beside a GPU."""
    n = model_settings(name)["train"].get("num_threads")
    return int(n) if n else (2 if USES_GPU else 1)


def model_config_file(name):
    return f"{RESULTS}/configs/{name}.json"


def train_data(name):
    """Prepared data a model trains on."""
    source = rules.textured if MODELS[name] == "factorial" else rules.prepare_background
    return list(source.output)


def eval_data(name):
    """Prepared data a model is evaluated on."""
    exp = MODELS[name]
    if exp == "factorial":
        return list(rules.textured.output)
    if exp == "hierarchical":
        return list(rules.prepare_evaluation.output)
    files = list(rules.prepare_evaluation.output)
    ev = CFG["evaluation"]
    if ev["lake_runs"]:
        files += rules.lake_runs.output
    if ev["within_alphabet_runs"]:
        files += rules.within_alphabet_runs.output
    return files


def job_data(name):
    """Everything an evaluation job reads of the prepared data."""
    return sorted(set(train_data(name) + eval_data(name)))


def trained(name):
    """The marker the train rule writes when model `name` has finished."""
    return expand(rules.train.output.summary, model=name)[0]


def metrics_of(name):
    """Model `name`'s metrics JSON, from the evaluation rule of its experiment."""
    if name in CLASS_MODELS:
        return expand(rules.evaluate.output.metrics, class_model=name)[0]
    return expand(rules.evaluate_structured.output.metrics, structured_model=name)[0]


def final_model(name):
    """The finished run's best.pt (a declared output of the train rule)."""
    return expand(rules.train.output.model, model=name)[0]


def final_history(name):
    """The finished run's history.csv (a declared output of the train rule)."""
    return expand(rules.train.output.history, model=name)[0]


def comparison_model(name):
    """hierarchical: the class-structured model with the same objective and decoder (its bound and
    -log p(X) are reported beside the hierarchical model's), or None."""
    if MODELS[name] != "hierarchical":
        return None
    mine = CFG["models"][name]
    for other in CLASS_MODELS:
        entry = CFG["models"][other]
        if (entry["experiment"] == "class" and entry.get("objective", "vhe") == mine.get("objective", "vhe")
                and entry.get("decoder", "deconv") == mine.get("decoder", "deconv")):
            return other
    return None


def structured_inputs(wildcards):
    name = wildcards.structured_model
    files = {"config": model_config_file(name), "evaluation": EVALUATION_CONFIG, "trained": trained(name),
             "model": final_model(name), "history": final_history(name), "data": job_data(name)}
    other = comparison_model(name)
    if other:
        files["class_config"] = model_config_file(other)
        files["class_trained"] = trained(other)
        files["class_model"] = final_model(other)
        files["class_history"] = final_history(other)
    return files


def structured_extra_args(wildcards, input):
    """--class-checkpoint/--class-config of the comparison model, when there is one."""
    if "class_model" not in input.keys():
        return ""
    return f"--class-checkpoint {shell_quote(input.class_model)} --class-config {shell_quote(input.class_config)}"


# --------------------------------------------------------------------------- report outputs
def figure_output(stem, ext, title):
    path = f"{RESULTS}/figures/{stem}.{ext}"
    if ext != "png":
        return path  # the PDF twins are not duplicated in the report
    return report(path, caption=caption(stem), category="Figures", labels={"figure": title})


def table_output(name, title):
    return report(f"{RESULTS}/tables/{name}", caption=caption(name.split(".")[0]), category="Tables",
                  labels={"table": title})


# --------------------------------------------------------------------------- cluster resources
# Every job declares gpu, mem_mb, runtime (minutes) and cpus_per_task. Local runs ignore them
# unless capped with --resources (e.g. --resources gpu=1); executor plugins such as slurm
# submit with them (profiles/slurm/, README "Running on a cluster"). Override one with
# --set-resources RULE:NAME=VALUE.
#
# Training steps, measured on one CPU thread in fp32 at batch 32 with the cpu profile's networks
# (README "Performance", config/cpu.yaml header): ms per step and the T (targets per support
# set) they were measured at.
CPU_MS_PER_STEP = {
    ("class", "deconv"): (70, 4),
    ("class", "pixelcnn"): (330, 4),
    ("vae", "deconv"): (155, 1),  # not measured: the class model's step at T = 1 (70 ms / 0.45)
    ("vae", "pixelcnn"): (250, 1),
    ("hierarchical", "deconv"): (350, 4),
    ("factorial", "pixelcnn"): (500, 4),
}
# a step at T < 4 costs this many times one at T = 4 (README, "Several targets per support set")
T1_OVER_T4 = {"deconv": 2.2, "pixelcnn": 1.2}
# image decodes per second of the importance samplers on one CPU thread, cpu-profile networks
# (README "Performance": log_marginal at K = 1000)
CPU_DECODES_PER_S = {"deconv": 697, "pixelcnn": 93}
# NOT MEASURED: no GPU was available to this project. Jobs on a GPU are sized as this many
# times one CPU thread, a deliberately low guess (a GPU is usually far faster on these convnets);
# `python -m bench.run_all --device cuda` measures it.
GPU_SPEEDUP = 10
# the estimates count training steps and image decodes; validation, checkpoints, sample grids,
# start-up and a loaded machine are not counted, hence this factor and a fixed allowance
SAFETY = 2.0
START_MIN = 10
# A common partition limit. Training resumes from last.pt, so a job stopped at the limit
# continues where it was when resubmitted (profiles/slurm retries); evaluation starts over,
# so its limit grows with the attempt.
MAX_RUNTIME_MIN = 2 * 24 * 60
# Memory (max_rss in results/<run>/benchmarks/), measured in a smoke run only: 0.7-0.85 GB for
# the data jobs (mostly the Python + PyTorch runtime), 0.9-1.2 GB for training and evaluation.
# Larger profiles add their data (the paper profile's augmented background set, ~154k 28x28
# images, < 1 GB as float32), networks of a few M parameters, and the CUDA runtime beside a GPU
# (a few GB, not measured): these bounds leave room for all of it.
MEM_MB = {"model_cpu": 8000, "model_gpu": 16000, "figures": 4000}
# Data jobs (fetch, preprocess, runs, textures, domain gap) take 2-11 s each in a smoke run and
# seconds to minutes at full scale; the DTD download is about 600 MB.
FETCH_RESOURCES = {"mem_mb": 2000, "runtime": 60, "cpus_per_task": 1}
DATA_RESOURCES = {"mem_mb": 4000, "runtime": 60, "cpus_per_task": 1}
# the test split (vhe.data: 659 evaluation characters, 20 drawings each)
TEST_CLASSES, DRAWINGS = 659, 20


def _minutes(estimate_min, attempt=1):
    return int(min(MAX_RUNTIME_MIN, math.ceil(START_MIN + SAFETY * estimate_min * attempt)))


def _net_scale(m):
    """Cost of the model's networks relative to the cpu profile's (where the times were
    measured): PixelCNN depth x width^2 x kernel^2, deconv width^2. For the paper networks,
    measured on CPU too, the step time this predicts is 1.1x (deconv) and 1.6x (PixelCNN) the
    measured one."""
    nets = m["nets"]
    if m.get("decoder") == "pixelcnn":
        p = nets["pixelcnn"]
        return p["n_layers"] * p["channels"] ** 2 * p["kernel_size"] ** 2 / (4 * 24**2 * 5**2)
    return max(nets["deconv_channels"], nets["conv_channels"]) ** 2 / 32**2


def _speedup():
    return GPU_SPEEDUP if USES_GPU else 1


def _decode_s(m, decodes):
    """Seconds to decode `decodes` images with model settings `m` on this job's device."""
    return decodes / CPU_DECODES_PER_S[m.get("decoder", "deconv")] * _net_scale(m) / _speedup()


def train_estimate_min(name):
    """Estimated minutes of training (before SAFETY): steps x measured step time, plus the
    one-shot learning curve's decodes."""
    m = model_settings(name)
    tr = m["train"]
    decoder = m.get("decoder", "deconv")
    same = [v for (exp, dec), v in CPU_MS_PER_STEP.items() if dec == decoder]
    ms, measured_t = CPU_MS_PER_STEP.get((m["experiment"], decoder), max(same))
    if measured_t >= 4 > int(tr.get("targets_per_class") or 1):
        ms *= T1_OVER_T4[decoder]
    ms *= _net_scale(m) * tr["batch_size"] / 32 / _speedup()
    steps = int(tr["max_steps"])
    curve = tr.get("one_shot_curve") or {}
    curve_decodes = 0
    if curve.get("every"):
        points = steps // curve["every"] + 1
        curve_decodes = points * curve["n_runs"] * curve["n_way"] ** 2 * curve["n_samples"]
    return (steps * ms / 1000 + _decode_s(m, curve_decodes)) / 60


def evaluation_settings(name):
    """The evaluation section with the model's per_decoder overrides applied."""
    ev = dict(CFG["evaluation"])
    per = (ev.pop("per_decoder", None) or {}).get(model_settings(name).get("decoder", "deconv")) or {}
    ev.update((k, v) for k, v in per.items() if v is not None)
    return ev


def eval_estimate_min(name):
    """Estimated minutes of evaluation (before SAFETY), from the image decodes it makes:
    K per test image for log p(X), and per query-candidate pair of every classification trial
    K (conditional) and K (|D| + 2) (marginal ratio). An upper estimate for the structured
    models, whose evaluation classifies less."""
    ev = evaluation_settings(name)
    m = model_settings(name)
    maxc = (CFG.get("data") or {}).get("max_characters")
    classes = min(TEST_CLASSES, ev.get("max_classes") or TEST_CLASSES, maxc or TEST_CLASSES)
    decodes = classes * DRAWINGS * ev["n_samples"]
    trials = []  # (pairs, shots)
    if ev["lake_runs"]:
        trials.append(((ev.get("max_runs") or 20) * 20 * 20, 1))
    trials.append((ev["within_alphabet_runs"] * DATA_N_WAY**2, 1))
    val = ev.get("validation_runs") or {}
    trials.append((val.get("n_runs", 0) * val.get("n_way", 5) ** 2, 1))
    eps = ev.get("episodes") or {}
    for way in eps.get("ways", []):
        trials += [(eps.get("n_episodes", 0) * way**2, shot) for shot in eps.get("shots", [])]
    for pairs, shot in trials:
        per_pair = {"conditional": 1, "symmetric": 1 + shot, "marginal_ratio": shot + 2, "ns_kl": 0}
        decodes += pairs * ev["classification_samples"] * sum(per_pair[e] for e in ev["estimators"])
    return _decode_s(m, decodes) / 60


def train_runtime(wildcards, attempt):
    return _minutes(train_estimate_min(wildcards.model))  # a resubmitted job resumes: no growth


def eval_runtime(wildcards, attempt):
    name = getattr(wildcards, "class_model", None) or wildcards.structured_model
    return _minutes(eval_estimate_min(name), attempt)


def model_mem_mb(wildcards):
    return MEM_MB["model_gpu"] if USES_GPU else MEM_MB["model_cpu"]


def gpu_resource(wildcards):
    """gpu=1 when the config's device is cuda, or auto on a machine with a GPU."""
    return GPU
