# Data rules: download (mirror first, sha256-verified) -> preprocess -> one-shot runs, textures, domain gap.
#
# Paths, settings and helpers come from rules/common.smk (the resolved config): raw files go to
# resources/raw/ (shared by all runs), prepared data to PATHS (resources/<run>/). Paths are
# relative to the working directory (the repository root by default); so is a relative
# data.mirror. The fetch rules run where Snakemake runs (localrule), since cluster nodes often
# have no network.


rule fetch_raw:
    output:
        OUT.raw_file("{file}"),
    log:
        f"{RESULTS}/logs/data/fetch_{{file}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/fetch_{{file}}.tsv"
    wildcard_constraints:
        file=_alternation(DATA_FILES),
    localrule: True
    conda:
        "../envs/vhe.yaml"
    resources:
        **FETCH_RESOURCES,
    params:
        py=PY,
        dest=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "{params.py:q} -m vhe.data.fetch --name {wildcards.file:q} --dest {params.dest:q} > {log:q} 2>&1"


if TEXTURE_SOURCE == "dtd":

    rule fetch_dtd:
        output:
            OUT.raw_file(OUT.DTD_ARCHIVE),
        log:
            f"{RESULTS}/logs/data/fetch_dtd.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/fetch_dtd.tsv"
        localrule: True
        conda:
            "../envs/vhe.yaml"
        resources:
            **FETCH_RESOURCES,
        params:
            py=PY,
            dest=lambda wc, output: os.path.dirname(output[0]),
        shell:
            "{params.py:q} -m vhe.data.cli fetch-dtd --dest {params.dest:q} > {log:q} 2>&1"


rule prepare_background:
    input:
        OUT.raw_file("train_small.npz"),
    output:
        PATHS["background"],
    log:
        f"{RESULTS}/logs/data/prepare_background.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/prepare_background.tsv"
    conda:
        "../envs/vhe.yaml"
    resources:
        **DATA_RESOURCES,
    params:
        py=PY,
        args=prepare_args(),
    shell:
        "{params.py:q} -m vhe.data.cli prepare-omniglot --npz {input:q} --out {output:q} {params.args:q} > {log:q} 2>&1"


rule prepare_evaluation:
    input:
        OUT.raw_file("test_small.npz"),
    output:
        PATHS["evaluation"],
    log:
        f"{RESULTS}/logs/data/prepare_evaluation.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/prepare_evaluation.tsv"
    conda:
        "../envs/vhe.yaml"
    resources:
        **DATA_RESOURCES,
    params:
        py=PY,
        args=prepare_args(),
    shell:
        "{params.py:q} -m vhe.data.cli prepare-omniglot --npz {input:q} --out {output:q} {params.args:q} > {log:q} 2>&1"


rule lake_runs:
    input:
        OUT.raw_file("all_runs.zip"),
    output:
        PATHS["lake_runs"],
    log:
        f"{RESULTS}/logs/data/lake_runs.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/lake_runs.tsv"
    conda:
        "../envs/vhe.yaml"
    resources:
        **DATA_RESOURCES,
    params:
        py=PY,
        args=[a for a in prepare_args() if a == "--center-ink"],
    shell:
        "{params.py:q} -m vhe.data.cli prepare-runs --zip {input:q} --out {output:q} {params.args:q} > {log:q} 2>&1"


rule within_alphabet_runs:
    input:
        rules.prepare_evaluation.output,
    output:
        PATHS["within_alphabet_runs"],
    log:
        f"{RESULTS}/logs/data/within_alphabet_runs.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/within_alphabet_runs.tsv"
    conda:
        "../envs/vhe.yaml"
    resources:
        **DATA_RESOURCES,
    params:
        py=PY,
        n_runs=DATA_N_RUNS,
        n_way=DATA_N_WAY,
        seed=CFG["seed"],
    shell:
        "{params.py:q} -m vhe.data.cli within-alphabet-runs --set {input:q} --out {output:q} "
        "--n-runs {params.n_runs:q} --n-way {params.n_way:q} --seed {params.seed:q} > {log:q} 2>&1"


rule textured:
    input:
        omniglot=rules.prepare_background.output,
        textures=texture_input(),
    output:
        PATHS["textured"],
    log:
        f"{RESULTS}/logs/data/textured.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/textured.tsv"
    conda:
        "../envs/vhe.yaml"
    resources:
        **DATA_RESOURCES,
    params:
        py=PY,
        n_textures=TEXTURES["n_textures"],
        n_per_character=TEXTURES["n_per_character"],
        dilate=TEXTURES["dilate"],
        seed=CFG["seed"],
        textures=texture_args,
    shell:
        "{params.py:q} -m vhe.data.cli textured --set {input.omniglot:q} --out {output:q} "
        "--n-textures {params.n_textures:q} --n-per-character {params.n_per_character:q} "
        "--dilate {params.dilate:q} --seed {params.seed:q} {params.textures:q} > {log:q} 2>&1"


rule data_gap:
    input:
        npz=OUT.raw_file("train_small.npz"),
        lake=[OUT.raw_file("images_background_small1.zip"), OUT.raw_file("images_background_small2.zip")],
    output:
        f"{RESULTS}/metrics/data_gap.json",
    log:
        f"{RESULTS}/logs/data/data_gap.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/data_gap.tsv"
    conda:
        "../envs/vhe.yaml"
    resources:
        **DATA_RESOURCES,
    params:
        py=PY,
        lake=lambda wc, input: [a for z in input.lake for a in ("--lake-zip", z)],
        maxc=[a for a in prepare_args() if a != "--center-ink"],
    shell:
        "{params.py:q} -m vhe.data.cli gap --npz {input.npz:q} {params.lake:q} --out {output:q} {params.maxc:q} > {log:q} 2>&1"
