"""What the pipeline produces for a resolved config: one list shared by the Snakefile,
``scripts/check_outputs.py`` and ``paper_figures.make`` (so they cannot drift apart).

All paths are relative to the repository root (the Snakemake working directory) and built
from ``cfg["paths"]`` (filled by ``experiments.config.load_config``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CLASS_EXPERIMENTS",
    "STRUCTURED_EXPERIMENTS",
    "STRUCTURED_FIGURES",
    "TABLES",
    "FIGURES",
    "FIGURE_FORMATS",
    "results_dir",
    "models",
    "class_models",
    "structured_models",
    "checkpoint_dir",
    "checkpoint_outputs",
    "metrics_file",
    "baseline_files",
    "sample_figure",
    "structured_figures",
    "data_files",
    "table_files",
    "figure_files",
    "summary_files",
    "paper_figure_outputs",
    "expected_outputs",
    "config_file",
    "evaluation_config_file",
    "raw_file",
    "raw_files",
    "RAW_DIR",
    "DTD_ARCHIVE",
    "within_alphabet_way",
    "comparison_model",
    "resume_dir",
    "same_paths",
    "train_data",
    "eval_data",
    "job_data",
]

#: raw downloads, shared by every run (rules/data.smk's fetch rules)
RAW_DIR = "resources/raw"
#: torchvision.datasets.DTD's archive (vhe.data.textures.dtd_archive_name)
DTD_ARCHIVE = "dtd-r1.0.1.tar.gz"

#: experiments evaluated by ``analysis.evaluate`` (likelihood, KL(c), classification, 1-shot samples)
CLASS_EXPERIMENTS = ("vae", "class")
#: experiments evaluated by ``analysis.structured`` (metrics and sample grids)
STRUCTURED_EXPERIMENTS = ("hierarchical", "factorial")
#: figure stems (under results/<run>/figures/, PNG) that ``analysis.structured`` writes per experiment
STRUCTURED_FIGURES = {
    "hierarchical": ("hierarchical_samples",),
    "factorial": ("factorial_samples",),
}
#: tables written by ``paper_figures.make`` under results/<run>/tables/
TABLES = (
    "metrics.csv",
    "objectives.csv",
    "objectives.md",
    "objectives.tex",
    "claims.csv",
    "claims.md",
    "classification.csv",
    "classification.md",
    "classification.tex",
    "learning_curves.csv",
    "learning_curves.md",
    "structured.csv",
    "structured.md",
    "structured.tex",
    "seeds.csv",
    "seeds.md",
    "families.csv",
    "families.md",
)
#: figure stems written by ``paper_figures.make`` under results/<run>/figures/, each in FIGURE_FORMATS
FIGURES = ("training_curves", "learning_curves", "kl_c", "samples_montage")
FIGURE_FORMATS = ("png", "pdf")


def results_dir(cfg: Mapping) -> str:
    return str(cfg["paths"]["results"]).rstrip("/")


def models(cfg: Mapping) -> dict[str, str]:
    """model name -> experiment, in config order."""
    return {name: entry["experiment"] for name, entry in (cfg.get("models") or {}).items()}


def class_models(cfg: Mapping) -> list[str]:
    return [m for m, e in models(cfg).items() if e in CLASS_EXPERIMENTS]


def structured_models(cfg: Mapping) -> list[str]:
    return [m for m, e in models(cfg).items() if e in STRUCTURED_EXPERIMENTS]


def config_file(cfg: Mapping, model: str) -> str:
    """results/<run>/configs/<model>.json: what the model's training depends on."""
    return f"{results_dir(cfg)}/configs/{model}.json"


def evaluation_config_file(cfg: Mapping) -> str:
    """results/<run>/configs/evaluation.json: what evaluation depends on beyond the model's config."""
    return f"{results_dir(cfg)}/configs/evaluation.json"


def raw_file(name: str) -> str:
    """resources/raw/<name>, a verified download."""
    return f"{RAW_DIR}/{name}"


def raw_files() -> list[str]:
    """Names of the public data files (vhe/data/MANIFEST.tsv, read by vhe.data.fetch)."""
    from vhe.data.fetch import read_manifest

    return list(read_manifest())


def within_alphabet_way(cfg: Mapping) -> int:
    """Ways of the within-alphabet runs: data.n_way, else 20, or fewer when max_characters < 20."""
    data = cfg.get("data") or {}
    maxc = data.get("max_characters")
    return int(data.get("n_way") or min(20, int(maxc) if maxc else 20))


def comparison_model(cfg: Mapping, model: str) -> str | None:
    """hierarchical: the class-structured model its bound, -log p(X), one-shot accuracy and
    alphabet-style control are reported beside (``analysis.structured --class-checkpoint``), or None.

    The model's ``compare_with`` when set (validated by experiments.config.check_comparisons: a
    class model of the config): that model, or its replicate (experiments.config.expand_replicates)
    trained with this model's seed. Otherwise the class model with the same objective and decoder;
    of several (a model and its replicates), the one trained with the same seed, else the first."""
    entries = cfg.get("models") or {}
    if entries.get(model, {}).get("experiment") != "hierarchical":
        return None
    mine = entries[model]
    if mine.get("compare_with"):
        named = mine["compare_with"]
        same = [named] + [other for other, entry in entries.items() if entry.get("replicate_of") == named]
    else:
        same = [
            other
            for other, entry in entries.items()
            if (
                entry.get("experiment") == "class"
                and entry.get("objective", "vhe") == mine.get("objective", "vhe")
                and entry.get("decoder", "deconv") == mine.get("decoder", "deconv")
            )
        ]
    seeded = [other for other in same if entries.get(other, {}).get("seed") == mine.get("seed")]
    return (seeded or same or [None])[0]


def train_data(cfg: Mapping, model: str) -> list[str]:
    """Prepared data model ``model`` trains on (factorial: the textured set)."""
    paths = cfg["paths"]
    return [paths["textured"] if models(cfg)[model] == "factorial" else paths["background"]]


def eval_data(cfg: Mapping, model: str) -> list[str]:
    """Prepared data model ``model`` is evaluated on."""
    paths, exp, ev = cfg["paths"], models(cfg)[model], cfg["evaluation"]
    if exp == "factorial":
        return [paths["textured"]]
    files = [paths["evaluation"]]
    if exp == "hierarchical":
        return files
    if ev["lake_runs"]:
        files.append(paths["lake_runs"])
    if ev["within_alphabet_runs"]:
        files.append(paths["within_alphabet_runs"])
    return files


def job_data(cfg: Mapping, model: str) -> list[str]:
    """Everything an evaluation job of ``model`` reads of the prepared data."""
    return sorted(set(train_data(cfg, model) + eval_data(cfg, model)))


def checkpoint_dir(cfg: Mapping, model: str) -> str:
    return f"{results_dir(cfg)}/checkpoints/{model}"


def resume_dir(cfg: Mapping, model: str) -> str:
    """Where the trainer keeps last.pt, best.pt and history.csv while training model ``model``:
    ``paths.resume_store/<model>`` (default: the run's checkpoints folder)."""
    store = (cfg.get("paths") or {}).get("resume_store") or f"{results_dir(cfg)}/checkpoints"
    return f"{str(store).rstrip('/')}/{model}"


def checkpoint_outputs(cfg: Mapping, model: str) -> dict[str, str]:
    d = checkpoint_dir(cfg, model)
    return {"best": f"{d}/final/best.pt", "history": f"{d}/final/history.csv", "summary": f"{d}/train_summary.json"}


def metrics_file(cfg: Mapping, model: str) -> str:
    return f"{results_dir(cfg)}/metrics/{model}.json"


def baseline_files(cfg: Mapping) -> list[str]:
    """The non-learned baselines on Lake's runs (``analysis.baselines``), when those runs are evaluated."""
    return [f"{results_dir(cfg)}/metrics/baselines.json"] if (cfg.get("evaluation") or {}).get("lake_runs") else []


def sample_figure(cfg: Mapping, model: str) -> str:
    return f"{results_dir(cfg)}/figures/samples_{model}.png"


def structured_figures(cfg: Mapping, model: str) -> list[str]:
    exp = models(cfg)[model]
    # figure names carry the experiment name; a second model of the same experiment would
    # collide, so the model name is used when it differs from the experiment's
    prefix = exp if model == exp else model
    return [
        f"{results_dir(cfg)}/figures/{stem.replace(exp, prefix, 1)}.png" for stem in STRUCTURED_FIGURES.get(exp, ())
    ]


def data_files(cfg: Mapping) -> list[str]:
    """The prepared data (rules/data.smk) and the measured domain gap."""
    p = cfg["paths"]
    return [
        p["background"],
        p["evaluation"],
        p["lake_runs"],
        p["within_alphabet_runs"],
        p["textured"],
        f"{results_dir(cfg)}/metrics/data_gap.json",
    ]


def table_files(cfg: Mapping) -> list[str]:
    return [f"{results_dir(cfg)}/tables/{t}" for t in TABLES]


def figure_files(cfg: Mapping) -> list[str]:
    return [f"{results_dir(cfg)}/figures/{f}.{ext}" for f in FIGURES for ext in FIGURE_FORMATS]


def summary_files(cfg: Mapping) -> list[str]:
    return [f"{results_dir(cfg)}/summary.md", f"{results_dir(cfg)}/summary.html"]


def paper_figure_outputs(cfg: Mapping) -> list[str]:
    """Everything ``python -m paper_figures.make`` writes."""
    return table_files(cfg) + figure_files(cfg) + summary_files(cfg)


def same_paths(declared, expected) -> bool:
    """True when each of ``declared`` is one of ``expected``, or one of them behind a prefix
    (``<prefix>/<path>``, as a storage provider names them), and every expected path is declared once."""
    expected = set(expected)
    matched = [p for d in declared for p in expected if d == p or d.endswith("/" + p)]
    return len(matched) == len(declared) == len(expected) and set(matched) == expected


def expected_outputs(cfg: Mapping, data: bool = True) -> list[str]:
    """Every file a complete run of the pipeline leaves behind (``data``: include the prepared data)."""
    out = list(data_files(cfg)) if data else []
    for m in models(cfg):
        out.append(config_file(cfg, m))
        out += list(checkpoint_outputs(cfg, m).values())
        out.append(metrics_file(cfg, m))
    out += baseline_files(cfg)
    for m in class_models(cfg):
        out.append(sample_figure(cfg, m))
    for m in structured_models(cfg):
        out += structured_figures(cfg, m)
    out += paper_figure_outputs(cfg)
    return list(dict.fromkeys(out))
