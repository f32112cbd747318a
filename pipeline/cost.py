"""The cost model: seconds of training and evaluation per model, from the config and the measured
rates in ``pipeline/rates.json``. One model, read by ``pipeline/estimate.py`` (``vhe-estimate``, what
``make reproduce`` prints) and by the rules' runtime resources (``pipeline/resources.py``).

Assumptions (the numbers are in rates.json, with when and where they were measured):

1. Training a class model on one CPU thread, fp32, one target per support set (T = 1) runs at
   ``train_images_per_s`` with the cpu-profile and the paper-profile networks; between and beyond
   these sizes the rate follows a power law in a network-size proxy (:func:`network_work`) through
   the two points; networks smaller than the cpu profile's run no faster than it (per-operation
   overhead dominates them).
2. T targets per support set (``train.targets_per_class``): the part of a T = 1 step that depends
   on the support set shrinks as 1/T, calibrated on the measured T = 4 speed-ups (``t4_speedup``);
   not applied to the VAE.
3. The rates are the reference VM's fp32 rates with contiguous (NCHW) weights (rates.json
   ``measured``). The training and decode rates are multiplied by ``cpu_factor`` (:func:`cpu_factor`):
   measured for the config's ``memory_format`` (channels_last runs oneDNN's convolutions faster)
   on the reference VM, or on a CPU with AVX2 but no AVX-512
   (``experiments.precision.cpu_is_avx2_only``). bf16 autocast on the CPU (``train.amp_cpu``,
   resolved for *this* CPU) multiplies the training rate by ``bf16_speedup``; ``train.amp`` (CUDA
   only) is ignored.
4. A step of another experiment costs ``experiment_factor`` times a class step with the same
   decoder, networks, T and precision; a VAE step ``vae_factor`` times a class step at T = 1. A
   model of the spatial network family (``nets.family: spatial``) trains and decodes
   ``family_factor`` times slower than the vector model with the same ``nets`` settings.
5. Every model trains ``max_steps`` steps (early stopping is not predicted); validation,
   checkpoints and sample grids are not counted.
6. Image decodes (evaluation, the one-shot learning curve) run at ``decodes_per_s`` (or
   ``decodes_per_s_small_chunks`` when ``evaluation.max_elements`` <= ``small_chunk``), scaled to
   other networks like the training rate. Counted: the learning curve, log p(X) (test characters
   x 20 drawings x K) and, for class models, classification on Lake's, the within-alphabet and the
   validation runs (:func:`pair_decodes` per pair and sample: the estimators share their draws),
   and the hierarchical model's alphabet measures (:func:`structured_decodes`). The factorial
   model's evaluation (grids of PixelCNN samples) costs its measured ``factorial_eval_s``. Data
   preparation and figures are not counted, so evaluation is a lower bound.
7. Jobs run one thread each, ``min(cores, CPUs)`` side by side, each ``side_by_side_slowdown``
   slower than alone when more than one runs; wall time = max(total job time x slowdown /
   parallel jobs, the longest model's training + evaluation x slowdown).
8. On one GPU (:func:`gpu_model_seconds`, :func:`gpu_estimate`) a model's rates are *measured*
   when a GPU-rates file (written by ``make gpu-check``, ``pipeline/gpu_check.py``) holds them,
   else *guessed*. The file is the path given (``vhe-estimate --gpu-rates``), else
   ``$VHE_GPU_RATES``, else rates.json's ``gpu_rates`` (``pipeline/gpu_rates.json``, committed once
   measured on a real GPU); the default file may be absent (all guessed), a named one may not.
   Training is measured when the file's entry for the model's name was measured with the same
   experiment, objective, decoder, networks, batch size, T, k_shot and ``train.amp``
   (:func:`model_signature`): ``max_steps`` x batch / its images/s. Decodes (evaluation and the
   learning curve) are measured when the file's entry for the decoder has the same networks: its
   decodes/s at K = 1000 with the config's ``evaluation.max_elements`` (extrapolated in K where
   K = 1000 did not fit the check's budget). Anything else is guessed: ``gpu_speedup_guess`` times
   the one-thread CPU rate of assumptions 1-6 at the reference VM's rates, whatever this machine's
   CPU. Every result says which (``train_source``, ``eval_source``: "measured" or "guess"). With
   ``snakemake --cores 8 --resources gpu=1`` the GPU jobs (training and evaluation of every model)
   run one at a time, so the wall-clock is the sum of their times; data preparation, baselines and
   figures (CPU jobs) are not counted.
9. What assumptions 1-7 leave out (validation, checkpoints, sample grids, cache contention beyond
   ``side_by_side_slowdown``, rates that differ inside the pipeline from the benchmarks') is priced by
   ``pipeline_ratio``: per job kind (:func:`job_kind`, ``"<experiment>/<decoder>"``) and job
   (``train``, ``eval``), the one-thread job time of a full run over its estimate by assumptions 1-7
   (x ``side_by_side_slowdown``), measured by ``vhe-estimate --calibrate`` on a finished run and
   applied to every CPU estimate (1.0 for a kind it did not measure). GPU estimates do not use it.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path

__all__ = [
    "RATES_PATH",
    "rates",
    "network_work",
    "family_factor",
    "train_rate",
    "decode_rate",
    "evaluation_decodes",
    "eval_decodes",
    "curve_decodes",
    "structured_decodes",
    "pair_decodes",
    "model_seconds",
    "job_kind",
    "pipeline_ratio",
    "usable_cores",
    "estimate",
    "OMNIGLOT_EVAL_CHARACTERS",
    "DRAWINGS",
    "GPU_RATES_ENV",
    "GPU_RATES_FORMAT",
    "GPU_ASSUMPTION",
    "gpu_rates_path",
    "gpu_rates",
    "model_signature",
    "gpu_decode_rate",
    "gpu_model_seconds",
    "gpu_estimate",
]

RATES_PATH = Path(__file__).with_name("rates.json")
OMNIGLOT_EVAL_CHARACTERS = 659
OMNIGLOT_EVAL_ALPHABETS = 20
DRAWINGS = 20
LAKE_RUNS, LAKE_WAY = 20, 20


@lru_cache(maxsize=1)
def _rates_text() -> str:
    return RATES_PATH.read_text()


def rates() -> dict:
    """The measured rates (a fresh copy of pipeline/rates.json)."""
    return json.loads(_rates_text())


def network_work(decoder: str, nets: dict) -> float:
    """Relative size of a model's networks (arbitrary units, proportional to multiply-adds per pixel)."""
    if decoder == "pixelcnn":
        p = nets["pixelcnn"]
        return float(p["n_layers"] * p["channels"] ** 2 * p["kernel_size"] ** 2)
    return float(nets["conv_layers"] * nets["conv_channels"] ** 2 + 2 * nets["deconv_channels"] ** 2)


def _size_scale(decoder: str, nets: dict) -> float:
    """Rate at these networks / rate at the cpu-profile networks (<= 1; power law, assumption 1)."""
    r = rates()
    w_small, w_big = network_work(decoder, r["cpu_nets"]), network_work(decoder, r["paper_nets"])
    r_small, r_big = r["train_images_per_s"][decoder]
    alpha = math.log(r_small / r_big) / math.log(w_big / w_small)
    w = network_work(decoder, nets)
    return 1.0 if w <= w_small else (w / w_small) ** (-alpha)


def family_factor(decoder: str, nets: dict) -> float:
    """Step and decode time of the model's network family over the vector family's (assumption 4)."""
    family = nets.get("family") or "vector"
    return float(rates().get("family_factor", {}).get(family, {}).get(decoder, 1.0))


def cpu_factor(decoder: str, work: str, avx2_only: bool = False, memory_format: str = "contiguous") -> float:
    """Rate of ``work`` ("train", "decode" or "decode_small_chunks") on a CPU class (the reference VM,
    or AVX2-only) with weights laid out as ``memory_format``, over the reference VM's contiguous rate
    (assumption 3)."""
    table = rates()["cpu_factor"]["avx2_only" if avx2_only else "reference"]
    if memory_format not in table:
        raise KeyError(f"rates.json cpu_factor has no {memory_format!r} entry")
    return float(table[memory_format][decoder][work])


def train_rate(
    experiment: str,
    decoder: str,
    nets: dict,
    targets_per_class: int = 1,
    bf16: bool = False,
    avx2_only: bool = False,
    memory_format: str = "contiguous",
) -> float:
    """Training images (targets) per second of one model on one CPU thread (assumptions 1-4)."""
    r = rates()
    rate = r["train_images_per_s"][decoder][0] * _size_scale(decoder, nets) / family_factor(decoder, nets)
    if experiment != "vae" and targets_per_class > 1:
        phi = (1 - 1 / r["t4_speedup"][decoder]) / (1 - 1 / 4)  # share of a T = 1 step spent per support set
        rate /= 1 - phi * (1 - 1 / targets_per_class)
    if bf16:
        rate *= r["bf16_speedup"][decoder]
    rate *= cpu_factor(decoder, "train", avx2_only, memory_format)
    return rate / (r["vae_factor"][decoder] if experiment == "vae" else r["experiment_factor"][experiment])


def decode_rate(
    decoder: str,
    nets: dict,
    max_elements: int | None = None,
    avx2_only: bool = False,
    memory_format: str = "contiguous",
) -> float:
    """Image decodes per second on one CPU thread, fp32, in chunks of ``max_elements`` images
    (assumptions 3 and 6)."""
    r = rates()
    small = max_elements is not None and max_elements <= r["small_chunk"]
    rate = r["decodes_per_s_small_chunks" if small else "decodes_per_s"][decoder] * _size_scale(decoder, nets)
    rate *= cpu_factor(decoder, "decode_small_chunks" if small else "decode", avx2_only, memory_format)
    return rate / family_factor(decoder, nets)


def eval_setting(cfg: dict, decoder: str, key: str):
    """evaluation[key] for a model with ``decoder``: its evaluation.per_decoder[decoder] override
    when set (:func:`experiments.config.evaluation_for`)."""
    return _evaluation(cfg, decoder).get(key)


def _evaluation(cfg: dict, decoder: str) -> dict:
    from experiments.config import evaluation_for

    return evaluation_for(cfg, decoder)


def pair_decodes(estimators, shots: int = 1) -> int:
    """Decoder evaluations per (query, class) pair and per sample K when ``estimators`` are scored
    together from shared draws (vhe.evaluate.class_scores_many): conditional 1; symmetric's reverse
    half ``shots`` more (its forward half is the conditional scores, drawn once); marginal_ratio
    ``shots`` + 1; ns_kl none. log p̂(D), once per support set, is not a per-pair cost."""
    est = set(estimators)
    n = 1 if est & {"conditional", "symmetric"} else 0
    n += shots if "symmetric" in est else 0
    n += shots + 1 if "marginal_ratio" in est else 0
    return n


def _pairs_decodes(n_pairs: int, estimators, k: int) -> int:
    return n_pairs * k * pair_decodes(estimators, shots=1)


def evaluation_decodes(cfg: dict, decoder: str, experiment: str = "class") -> int:
    """Image decodes of one class/VAE model's evaluation (assumption 6): log p(X), and for a class
    model the one-shot classification (a VAE has no class latent to classify with)."""
    ev = _evaluation(cfg, decoder)
    k, kc = ev.get("n_samples"), ev.get("classification_samples")
    maxc = cfg["data"].get("max_characters")
    n_chars = min(OMNIGLOT_EVAL_CHARACTERS, maxc or OMNIGLOT_EVAL_CHARACTERS)
    n_classes = min(n_chars, ev.get("max_classes") or n_chars)
    total = n_classes * DRAWINGS * k
    if experiment != "class":
        return int(total)
    est = ev.get("estimators") or ["conditional", "symmetric", "marginal_ratio", "ns_kl"]
    if ev.get("lake_runs", True):
        runs = min(LAKE_RUNS, ev.get("max_runs") or LAKE_RUNS)
        total += _pairs_decodes(runs * LAKE_WAY * LAKE_WAY, est, kc)
    way = min(20, maxc or 20)
    total += _pairs_decodes(int(ev.get("within_alphabet_runs") or 0) * way * way, est, kc)
    vr = ev.get("validation_runs") or {}
    total += _pairs_decodes(int(vr.get("n_runs", 0)) * int(vr.get("n_way", 0)) ** 2, est, kc)
    return int(total)


def structured_decodes(cfg: dict, decoder: str, compared: bool = True) -> int:
    """Image decodes of a hierarchical model's evaluation (analysis.hierarchical, assumption 6):
    episode bounds of its targets; -log p(X) of ``evaluation.structured.nll_classes`` characters
    without and with alphabet context (and under the class model when ``compared``), K each; the
    within-alphabet one-shot test (``oneshot_episodes`` episodes of ``oneshot_ways`` ways per
    alphabet: ~K (W + 1) W decodes per context arm, K W^2 per conditional arm); the alphabet-style
    check's new characters (one decode each). ``cfg``: a resolved config (its ``evaluation.structured``
    filled with the schema's defaults), as :func:`model_seconds` has it."""
    ev = _evaluation(cfg, decoder)
    st = ev["structured"]
    k, kc = int(ev.get("n_samples") or 0), int(ev.get("classification_samples") or 0)
    maxc = cfg["data"].get("max_characters")
    n_chars = min(OMNIGLOT_EVAL_CHARACTERS, maxc or OMNIGLOT_EVAL_CHARACTERS)
    models = 2 if compared else 1
    bounds = min(n_chars, ev.get("max_classes") or n_chars) * DRAWINGS * models
    likelihood = min(n_chars, int(st["nll_classes"])) * DRAWINGS * k * (models + 1)
    w = min(int(st["oneshot_ways"]), max(2, n_chars // OMNIGLOT_EVAL_ALPHABETS - 1))
    episode = 2 * kc * (w + 1) * w + (models + 1) * kc * w * w
    alphabets = min(OMNIGLOT_EVAL_ALPHABETS, n_chars)
    oneshot = alphabets * int(st["oneshot_episodes"]) * episode
    style = alphabets * int(st["style_alphabet_samples"]) * int(st["style_new"]) * (models + 1)
    return int(bounds + likelihood + oneshot + style)


def eval_decodes(cfg: dict, name: str, model: dict) -> int | None:
    """Image decodes of model ``name``'s evaluation job (``cfg`` resolved, ``model`` its resolved
    ``model`` section): :func:`evaluation_decodes` for a class or VAE model, :func:`structured_decodes`
    for a hierarchical one; None for the factorial model, whose evaluation is priced by its measured
    time instead (assumption 6)."""
    exp, dec = model["experiment"], model["decoder"]
    if exp in ("class", "vae"):
        return evaluation_decodes(cfg, dec, exp)
    if exp == "hierarchical":
        return structured_decodes(cfg, dec, compared=bool(cfg["models"][name].get("compare_with")))
    return None


def curve_decodes(train: dict, steps: int) -> int:
    """Image decodes of the one-shot learning curve during training (assumption 6)."""
    cc = train.get("one_shot_curve") or {}
    every = cc.get("every")
    if not every:
        return 0
    points = steps // every + (1 if steps % every else 0)
    per = pair_decodes([cc.get("method") or "conditional"], shots=1)
    return int(points * cc["n_runs"] * cc["n_way"] ** 2 * cc["n_samples"] * per)


def job_kind(model: dict) -> str:
    """``"<experiment>/<decoder>"`` of a resolved ``model`` section: the key of ``pipeline_ratio``."""
    return f"{model['experiment']}/{model['decoder']}"


def pipeline_ratio(kind: str, job: str) -> float:
    """Measured pipeline job time over its estimate by assumptions 1-7 for jobs of ``kind``
    (:func:`job_kind`) and ``job`` ("train" or "eval"), from rates.json ``pipeline_ratio``
    (assumption 9); 1.0 where it was not measured."""
    if job not in ("train", "eval"):
        raise ValueError(f"job must be 'train' or 'eval', not {job!r}")
    return float(rates().get("pipeline_ratio", {}).get("ratios", {}).get(kind, {}).get(job, 1.0))


def model_seconds(cfg: dict, name: str, cpu_flags=None, calibrated: bool = True) -> dict:
    """One model's cost on one CPU thread: {"experiment", "decoder", "kind", "steps", "batch_size",
    "train_images_per_s", "train_s", "eval_s"} (seconds) for the resolved config ``cfg``;
    ``cpu_flags`` (this machine's, from ``experiments.precision.cpu_flags``) resolves
    ``train.amp_cpu: auto`` and says whether the CPU is AVX2-only (assumption 3). ``calibrated``:
    times multiplied by :func:`pipeline_ratio` (assumption 9); False gives assumptions 1-7 alone."""
    from experiments.config import model_config
    from experiments.precision import cpu_flags as read_flags, cpu_is_avx2_only, resolve_amp_cpu

    m = model_config(cfg, name)["model"]
    exp, dec, nets, tr = m["experiment"], m["decoder"], m["nets"], m["train"]
    steps, batch = int(tr["max_steps"]), int(tr["batch_size"])
    flags = read_flags() if cpu_flags is None else cpu_flags
    avx2 = cpu_is_avx2_only(flags)
    bf16 = resolve_amp_cpu(tr.get("amp_cpu"), flags)
    layout = cfg["memory_format"]
    rate = train_rate(exp, dec, nets, int(tr.get("targets_per_class") or 1), bf16, avx2, layout)
    curve = curve_decodes(tr, steps) if exp != "vae" else 0
    train_s = steps * batch / rate + curve / decode_rate(dec, nets, None, avx2, layout)
    eval_rate = decode_rate(dec, nets, eval_setting(cfg, dec, "max_elements"), avx2, layout)
    decodes = eval_decodes(cfg, name, m)
    if decodes is not None:
        eval_s = decodes / eval_rate
    else:  # factorial: grids of PixelCNN samples, priced by their measured (contiguous) time (assumption 6)
        eval_s = float(rates()["factorial_eval_s"]["seconds"]) / cpu_factor(dec, "decode", avx2, layout)
    kind = job_kind(m)
    if calibrated:
        train_s *= pipeline_ratio(kind, "train")
        eval_s *= pipeline_ratio(kind, "eval")
    return {
        "experiment": exp,
        "decoder": dec,
        "kind": kind,
        "steps": steps,
        "batch_size": batch,
        "train_images_per_s": rate,
        "train_s": train_s,
        "eval_s": eval_s,
    }


def usable_cores(cores: int) -> int:
    """Jobs side by side: min(cores asked, CPUs this process may use), at least 1."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = os.cpu_count() or 1
    return max(1, min(int(cores), avail))


def estimate(config, cores: int = 1, cpu_flags=None, calibrated: bool = True) -> dict:
    """CPU cost of the pipeline for ``config`` (a path or a dict), in seconds, on a CPU with the
    feature flags ``cpu_flags`` (default: this machine's; ``experiments.precision.AVX2_ONLY_FLAGS``
    prices an AVX2-only CPU); ``calibrated`` as in :func:`model_seconds`.

    Returns {"run", "parallel" (jobs side by side), "models": {name: :func:`model_seconds`},
    "train_s", "eval_s" (sums of one-thread job time), "job_s" (their sum), "wall_s" (wall-clock)}.
    """
    from experiments.config import load_config
    from experiments.precision import cpu_flags as read_flags

    cfg = load_config(config)
    par = usable_cores(cores)
    flags = read_flags() if cpu_flags is None else cpu_flags  # read once for every model
    out = {
        "run": cfg["run"],
        "parallel": par,
        "models": {name: model_seconds(cfg, name, flags, calibrated) for name in cfg["models"]},
    }
    ms = out["models"].values()
    out["train_s"] = sum(v["train_s"] for v in ms)
    out["eval_s"] = sum(v["eval_s"] for v in ms)
    out["job_s"] = out["train_s"] + out["eval_s"]
    longest = max((v["train_s"] + v["eval_s"] for v in ms), default=0.0)
    slowdown = rates()["side_by_side_slowdown"] if par > 1 else 1.0
    out["wall_s"] = slowdown * max(out["job_s"] / par, longest)
    return out


# ----------------------------------------------------------------------- one GPU (assumption 8)
GPU_RATES_ENV = "VHE_GPU_RATES"
GPU_RATES_FORMAT = "vhe.gpu_rates"
GPU_ASSUMPTION = (
    "snakemake --cores 8 --resources gpu=1 on one GPU: the GPU jobs (training and evaluation of every "
    "model) run one at a time, so the wall-clock is the sum of their times; data preparation, "
    "baselines and figures (CPU jobs) are not counted"
)
#: CPU flags priced at rates.json's own (reference VM, fp32) rates: the CPU basis of a GPU guess, which
#: does not depend on the CPU of the machine that prints it
REFERENCE_CPU_FLAGS = frozenset()
AUTO = "auto"  # gpu_rates argument: the file named by $VHE_GPU_RATES or rates.json's gpu_rates


def gpu_rates_path() -> Path | None:
    """The GPU-rates file the cost model reads by default: ``$VHE_GPU_RATES``, else rates.json's
    ``gpu_rates`` (relative to the checkout), else None."""
    env = os.environ.get(GPU_RATES_ENV)
    if env:
        return Path(env)
    rel = rates().get("gpu_rates")
    if not rel:
        return None
    p = Path(rel)
    return p if p.is_absolute() else RATES_PATH.parent.parent / p


@lru_cache(maxsize=8)
def _read_gpu_rates(path: str, mtime_ns: int) -> str:
    return Path(path).read_text()


def gpu_rates(path=None) -> dict | None:
    """The measured GPU rates (a ``vhe-gpu-check`` JSON, see pipeline/gpu_check.py) from ``path``,
    else from :func:`gpu_rates_path`; None when no path is set or the default file does not exist.
    A path given here or in ``$VHE_GPU_RATES`` must exist (FileNotFoundError). Adds ``"path"``."""
    named = path is not None or bool(os.environ.get(GPU_RATES_ENV))
    p = Path(path) if path is not None else gpu_rates_path()
    if p is None or not p.is_file():
        if named:
            raise FileNotFoundError(
                f"{p}: no GPU-rates file (written by `make gpu-check`; ${GPU_RATES_ENV} or --gpu-rates names it)"
            )
        return None
    data = json.loads(_read_gpu_rates(str(p), p.stat().st_mtime_ns))
    if not isinstance(data, dict) or data.get("format") != GPU_RATES_FORMAT:
        raise ValueError(f"{p}: not a GPU-rates file (format {GPU_RATES_FORMAT!r}; `make gpu-check` writes one)")
    data.setdefault("path", str(p))
    return data


def _gpu_rates_arg(value) -> dict | None:
    """A ``gpu_rates`` argument: AUTO (the default file), None (guess everything), a path or a loaded dict."""
    if value is None or isinstance(value, dict):
        return value
    return gpu_rates() if value == AUTO else gpu_rates(value)


def model_signature(model: dict) -> dict:
    """What a model's measured training rate depends on (a resolved ``model`` section): experiment,
    objective, decoder, nets, batch_size, targets_per_class, k_shot, k_shot_alphabet and amp."""
    tr = model["train"]
    return {
        "experiment": model["experiment"],
        "objective": model.get("objective"),
        "decoder": model["decoder"],
        "nets": json.loads(json.dumps(model["nets"])),
        "batch_size": int(tr["batch_size"]),
        "targets_per_class": int(tr.get("targets_per_class") or 1),
        "k_shot": int(tr["k_shot"]),
        "k_shot_alphabet": tr.get("k_shot_alphabet"),
        "amp": bool(tr.get("amp")),
    }


def _measured_train(measured: dict | None, name: str, model: dict) -> dict | None:
    e = ((measured or {}).get("models") or {}).get(name)
    if e and e.get("images_per_s") and e.get("signature") == model_signature(model):
        return e
    return None


def gpu_decode_rate(cfg: dict, decoder: str, nets: dict, gpu_rates=AUTO) -> tuple[float, str]:
    """(image decodes per second on one GPU, "measured" | "guess") for a model with ``decoder`` and
    ``nets`` in the resolved config ``cfg`` (assumption 8)."""
    measured = _gpu_rates_arg(gpu_rates)
    e = ((measured or {}).get("decoders") or {}).get(decoder)
    if e and e.get("decodes_per_s") and e.get("nets") == json.loads(json.dumps(nets)):
        return float(e["decodes_per_s"]), "measured"
    return decode_rate(decoder, nets, eval_setting(cfg, decoder, "max_elements")) * rates()[
        "gpu_speedup_guess"
    ], "guess"


def gpu_model_seconds(cfg: dict, name: str, gpu_rates=AUTO, cpu_flags=None) -> dict:
    """One model's cost on one GPU (assumption 8): :func:`model_seconds`'s keys, priced with the
    measured GPU rates where they apply, plus "decodes_per_s", "train_source" and "eval_source"
    ("measured" or "guess"). ``gpu_rates``: AUTO (the default file), None (all guessed), a path or
    a loaded dict; ``cpu_flags``: the CPU whose one-thread rates a guess multiplies (default: the
    reference rates, :data:`REFERENCE_CPU_FLAGS`)."""
    from experiments.config import model_config

    measured = _gpu_rates_arg(gpu_rates)
    m = model_config(cfg, name)["model"]
    cpu = model_seconds(cfg, name, REFERENCE_CPU_FLAGS if cpu_flags is None else cpu_flags, calibrated=False)
    guess = rates()["gpu_speedup_guess"]
    exp, dec, nets, tr = m["experiment"], m["decoder"], m["nets"], m["train"]
    steps, batch = cpu["steps"], cpu["batch_size"]
    entry = _measured_train(measured, name, m)
    rate = float(entry["images_per_s"]) if entry else cpu["train_images_per_s"] * guess
    eval_rate, eval_source = gpu_decode_rate(cfg, dec, nets, measured)
    curve = curve_decodes(tr, steps) if exp != "vae" else 0
    layout = cfg["memory_format"]
    curve_rate = eval_rate if eval_source == "measured" else decode_rate(dec, nets, None, False, layout) * guess
    train_s = steps * batch / rate + curve / curve_rate
    decodes = eval_decodes(cfg, name, m)
    # factorial: its measured one-thread CPU time, guessed faster on the GPU
    eval_s = decodes / eval_rate if decodes is not None else cpu["eval_s"] / guess
    return {
        "experiment": exp,
        "decoder": dec,
        "steps": steps,
        "batch_size": batch,
        "train_images_per_s": rate,
        "decodes_per_s": eval_rate,
        "train_s": train_s,
        "eval_s": eval_s,
        "train_source": "measured" if entry else "guess",
        "eval_source": eval_source if exp != "factorial" else "guess",
    }


def gpu_estimate(config, gpu_rates=AUTO) -> dict:
    """Cost of the pipeline for ``config`` (a path or a dict) with one GPU, in seconds (assumption 8).

    Returns {"run", "gpus": 1, "models": {name: :func:`gpu_model_seconds`}, "train_s", "eval_s",
    "job_s", "wall_s" (= job_s: the GPU jobs run one at a time), "measured" (the file's "path",
    "date", "device_name", "torch", or None), "n_measured" (models whose training is measured),
    "assumption"}.
    """
    from experiments.config import load_config

    cfg = load_config(config)
    measured = _gpu_rates_arg(gpu_rates)
    models = {name: gpu_model_seconds(cfg, name, measured) for name in cfg["models"]}
    out = {
        "run": cfg["run"],
        "gpus": 1,
        "models": models,
        "train_s": sum(v["train_s"] for v in models.values()),
        "eval_s": sum(v["eval_s"] for v in models.values()),
    }
    out["job_s"] = out["wall_s"] = out["train_s"] + out["eval_s"]
    out["measured"] = {k: measured.get(k) for k in ("path", "date", "device_name", "torch")} if measured else None
    out["n_measured"] = sum(v["train_source"] == "measured" for v in models.values())
    out["assumption"] = GPU_ASSUMPTION
    return out
