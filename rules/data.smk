# Data rules: download (mirror first, sha256-verified) -> preprocess -> one-shot runs, textures, domain gap.
#
# Included from the top-level Snakefile, which defines `config` with keys: run, seed,
# data.mirror, data.max_characters, textures.n_textures, textures.n_per_character
# (optional: paths.* as filled by experiments.config.load_config, data.n_way,
# evaluation.within_alphabet_runs, textures.source / url / sha256 / dilate).
# Paths are relative to the working directory (the repository root by default); so is a relative
# data.mirror. Raw files go to resources/raw/ (shared by all runs).
# Commands run `python -m vhe.data...` with the interpreter running Snakemake (the project's .venv).

import os
import re
import shlex
import sys
from pathlib import Path

DATA_RUN = config["run"]
DATA_PY = shlex.quote(sys.executable)
_DATA_PATHS = config.get("paths") or {}


def _data_path(key, default):
    """config["paths"][key] (filled by experiments.config.load_config) or the default layout."""
    return str(_DATA_PATHS.get(key) or default).replace("{run}", DATA_RUN)


DATA_RESULTS = _data_path("results", "results/{run}")
DATA_OUT = {k: _data_path(k, f"resources/{{run}}/{k}.pt")
            for k in ("background", "evaluation", "lake_runs", "within_alphabet_runs", "textured")}
_DATA_CFG = config.get("data") or {}
_DATA_TEX = config.get("textures") or {}
DATA_MANIFEST = str(Path(workflow.current_basedir).parent / "vhe" / "data" / "MANIFEST.tsv")
DATA_FILES = [line.split("\t", 1)[0] for line in Path(DATA_MANIFEST).read_text().splitlines()[1:] if line.strip()]
# the environment variable wins over the config key
DATA_MIRROR = os.environ.get("VHE_DATA_MIRROR") or _DATA_CFG.get("mirror") or None
# The mirror reaches the fetch jobs through the environment (vhe.data.fetch reads
# VHE_DATA_MIRROR), not as a rule parameter: where a verified file came from must not make
# Snakemake refetch it and rerun everything downstream when the mirror is set or unset.
if DATA_MIRROR:
    os.environ["VHE_DATA_MIRROR"] = str(Path(DATA_MIRROR).resolve())
_DATA_MAXC = _DATA_CFG.get("max_characters")
DATA_MAXC_ARG = f"--max-characters {int(_DATA_MAXC)}" if _DATA_MAXC else ""
# Lake's protocol is 20-way; with --max-characters K the first alphabet keeps min(K, 20) characters
DATA_N_WAY = int(_DATA_CFG.get("n_way") or min(20, int(_DATA_MAXC) if _DATA_MAXC else 20))
_DATA_WITHIN = (config.get("evaluation") or {}).get("within_alphabet_runs")
DATA_N_RUNS = max(1, int(20 if _DATA_WITHIN is None else _DATA_WITHIN))  # 0 (none evaluated): build one anyway
DATA_SEED = int(config.get("seed", 0))

# Textures: procedural unless textures.source names a local folder/zip/tar of images, or
# textures.url + textures.sha256 are given (then fetched into resources/raw/textures/ through
# vhe.data.fetch, mirror first, checksum-verified). No checksum of a public texture set is known
# offline, so a named set (e.g. "dtd") needs its url + sha256 (docs/textures.md).
_DATA_KNOWN_TEXTURE_SETS = {"dtd": "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"}
_DATA_TEX_URL, _DATA_TEX_SHA = _DATA_TEX.get("url"), _DATA_TEX.get("sha256")
_DATA_TEX_SOURCE = _DATA_TEX.get("source") or "procedural"
if _DATA_TEX_URL and _DATA_TEX_SHA:
    DATA_TEXTURE_INPUT = f"resources/raw/textures/{_DATA_TEX_URL.rstrip('/').rsplit('/', 1)[-1]}"
elif _DATA_TEX_SOURCE == "procedural":
    DATA_TEXTURE_INPUT = None
elif _DATA_TEX_SOURCE in _DATA_KNOWN_TEXTURE_SETS:
    raise ValueError(
        f"textures.source={_DATA_TEX_SOURCE!r}: no sha256 is known for "
        f"{_DATA_KNOWN_TEXTURE_SETS[_DATA_TEX_SOURCE]}, so it is not downloaded automatically. Set "
        f"textures.url and textures.sha256 (verified download), or download it yourself and set "
        f"textures.source to the local folder/zip/tar, or use textures.source: procedural.")
else:
    DATA_TEXTURE_INPUT = _DATA_TEX_SOURCE


def _data_q(x):
    return shlex.quote(str(x))


rule fetch_raw:
    output:
        "resources/raw/{file}",
    wildcard_constraints:
        file="|".join(re.escape(f) for f in DATA_FILES),
    params:
        manifest=_data_q(DATA_MANIFEST),
    log:
        f"{DATA_RESULTS}/logs/data/fetch_{{file}}.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/fetch_{{file}}.tsv"
    shell:
        "{DATA_PY} -m vhe.data.fetch --name {wildcards.file} --dest resources/raw "
        "--manifest {params.manifest} > {log} 2>&1"


if _DATA_TEX_URL and _DATA_TEX_SHA:

    rule fetch_textures:
        output:
            DATA_TEXTURE_INPUT,
        params:
            name=_data_q(Path(DATA_TEXTURE_INPUT).name),
            url=_data_q(_DATA_TEX_URL),
            sha=_data_q(_DATA_TEX_SHA),
        log:
            f"{DATA_RESULTS}/logs/data/fetch_textures.log",
        benchmark:
            f"{DATA_RESULTS}/benchmarks/data/fetch_textures.tsv"
        shell:
            "{DATA_PY} -m vhe.data.fetch --name {params.name} --dest resources/raw/textures "
            "--url {params.url} --sha256 {params.sha} > {log} 2>&1"


rule prepare_background:
    input:
        "resources/raw/train_small.npz",
    output:
        DATA_OUT["background"],
    params:
        maxc=DATA_MAXC_ARG,
    log:
        f"{DATA_RESULTS}/logs/data/prepare_background.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/prepare_background.tsv"
    shell:
        "{DATA_PY} -m vhe.data.cli prepare-omniglot --npz {input} --out {output} {params.maxc} > {log} 2>&1"


rule prepare_evaluation:
    input:
        "resources/raw/test_small.npz",
    output:
        DATA_OUT["evaluation"],
    params:
        maxc=DATA_MAXC_ARG,
    log:
        f"{DATA_RESULTS}/logs/data/prepare_evaluation.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/prepare_evaluation.tsv"
    shell:
        "{DATA_PY} -m vhe.data.cli prepare-omniglot --npz {input} --out {output} {params.maxc} > {log} 2>&1"


rule lake_runs:
    input:
        "resources/raw/all_runs.zip",
    output:
        DATA_OUT["lake_runs"],
    log:
        f"{DATA_RESULTS}/logs/data/lake_runs.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/lake_runs.tsv"
    shell:
        "{DATA_PY} -m vhe.data.cli prepare-runs --zip {input} --out {output} > {log} 2>&1"


rule within_alphabet_runs:
    input:
        DATA_OUT["evaluation"],
    output:
        DATA_OUT["within_alphabet_runs"],
    params:
        n_runs=DATA_N_RUNS,
        n_way=DATA_N_WAY,
        seed=DATA_SEED,
    log:
        f"{DATA_RESULTS}/logs/data/within_alphabet_runs.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/within_alphabet_runs.tsv"
    shell:
        "{DATA_PY} -m vhe.data.cli within-alphabet-runs --set {input} --out {output} "
        "--n-runs {params.n_runs} --n-way {params.n_way} --seed {params.seed} > {log} 2>&1"


rule textured:
    input:
        omniglot=DATA_OUT["background"],
        textures=[DATA_TEXTURE_INPUT] if DATA_TEXTURE_INPUT else [],
    output:
        DATA_OUT["textured"],
    params:
        n_textures=int(_DATA_TEX.get("n_textures", 8)),
        n_per_character=int(_DATA_TEX.get("n_per_character", 4)),
        dilate=int(_DATA_TEX.get("dilate", 1)),
        seed=DATA_SEED,
        folder=f"--texture-folder {_data_q(DATA_TEXTURE_INPUT)}" if DATA_TEXTURE_INPUT else "",
    log:
        f"{DATA_RESULTS}/logs/data/textured.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/textured.tsv"
    shell:
        "{DATA_PY} -m vhe.data.cli textured --set {input.omniglot} --out {output} "
        "--n-textures {params.n_textures} --n-per-character {params.n_per_character} "
        "--dilate {params.dilate} --seed {params.seed} {params.folder} > {log} 2>&1"


rule data_gap:
    input:
        npz="resources/raw/train_small.npz",
        lake=["resources/raw/images_background_small1.zip", "resources/raw/images_background_small2.zip"],
    output:
        f"{DATA_RESULTS}/metrics/data_gap.json",
    params:
        lake=lambda wc, input: " ".join(f"--lake-zip {_data_q(z)}" for z in input.lake),
        maxc=DATA_MAXC_ARG,
    log:
        f"{DATA_RESULTS}/logs/data/data_gap.log",
    benchmark:
        f"{DATA_RESULTS}/benchmarks/data/data_gap.tsv"
    shell:
        "{DATA_PY} -m vhe.data.cli gap --npz {input.npz} {params.lake} --out {output} {params.maxc} > {log} 2>&1"


DATA_TARGETS = [
    DATA_OUT["background"],
    DATA_OUT["evaluation"],
    DATA_OUT["lake_runs"],
    DATA_OUT["within_alphabet_runs"],
    DATA_OUT["textured"],
    f"{DATA_RESULTS}/metrics/data_gap.json",
]
