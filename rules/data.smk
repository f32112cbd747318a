# Data rules: download (mirror first, sha256-verified) -> preprocess -> one-shot runs, textures, domain gap.
#
# Paths, settings and helpers come from rules/common.smk (the resolved config): raw files go to
# resources/raw/ (shared by all runs), prepared data to PATHS (resources/<run>/). Paths are
# relative to the working directory (the repository root by default); so is a relative
# data.mirror. The fetch rules run where Snakemake runs (localrule), since cluster nodes often
# have no network.


rule fetch_raw:
    output:
        "resources/raw/{file}",
    wildcard_constraints:
        file=_alternation(DATA_FILES),
    localrule: True
    params:
        py=PY,
        dest=lambda wc, output: os.path.dirname(output[0]),
        manifest=shell_quote(DATA_MANIFEST),
    log:
        f"{RESULTS}/logs/data/fetch_{{file}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/fetch_{{file}}.tsv"
    resources:
        **FETCH_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.fetch --name {wildcards.file} --dest {params.dest:q} "
        "--manifest {params.manifest} > {log} 2>&1"


if DATA_TEXTURE_SOURCE == "dtd":

    rule fetch_dtd:
        output:
            f"resources/raw/{DTD_ARCHIVE}",
        localrule: True
        params:
            py=PY,
            dest=lambda wc, output: os.path.dirname(output[0]),
        log:
            f"{RESULTS}/logs/data/fetch_dtd.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/fetch_dtd.tsv"
        resources:
            **FETCH_RESOURCES,
        conda:
            "../envs/vhe.yaml"
        shell:
            "{params.py:q} -m vhe.data.cli fetch-dtd --dest {params.dest:q} > {log} 2>&1"


rule prepare_background:
    input:
        raw_file("train_small.npz"),
    output:
        PATHS["background"],
    params:
        py=PY,
        maxc=DATA_MAXC_ARG,
        center=DATA_CENTER_ARG,
    log:
        f"{RESULTS}/logs/data/prepare_background.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/prepare_background.tsv"
    resources:
        **DATA_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.cli prepare-omniglot --npz {input} --out {output} {params.maxc} {params.center} > {log} 2>&1"


rule prepare_evaluation:
    input:
        raw_file("test_small.npz"),
    output:
        PATHS["evaluation"],
    params:
        py=PY,
        maxc=DATA_MAXC_ARG,
        center=DATA_CENTER_ARG,
    log:
        f"{RESULTS}/logs/data/prepare_evaluation.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/prepare_evaluation.tsv"
    resources:
        **DATA_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.cli prepare-omniglot --npz {input} --out {output} {params.maxc} {params.center} > {log} 2>&1"


rule lake_runs:
    input:
        raw_file("all_runs.zip"),
    output:
        PATHS["lake_runs"],
    params:
        py=PY,
        center=DATA_CENTER_ARG,
    log:
        f"{RESULTS}/logs/data/lake_runs.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/lake_runs.tsv"
    resources:
        **DATA_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.cli prepare-runs --zip {input} --out {output} {params.center} > {log} 2>&1"


rule within_alphabet_runs:
    input:
        rules.prepare_evaluation.output,
    output:
        PATHS["within_alphabet_runs"],
    params:
        py=PY,
        n_runs=DATA_N_RUNS,
        n_way=DATA_N_WAY,
        seed=DATA_SEED,
    log:
        f"{RESULTS}/logs/data/within_alphabet_runs.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/within_alphabet_runs.tsv"
    resources:
        **DATA_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.cli within-alphabet-runs --set {input} --out {output} "
        "--n-runs {params.n_runs} --n-way {params.n_way} --seed {params.seed} > {log} 2>&1"


rule textured:
    input:
        omniglot=rules.prepare_background.output,
        textures=texture_input(),
    output:
        PATHS["textured"],
    params:
        py=PY,
        n_textures=DATA_TEXTURE_ARGS["n_textures"],
        n_per_character=DATA_TEXTURE_ARGS["n_per_character"],
        dilate=DATA_TEXTURE_ARGS["dilate"],
        seed=DATA_SEED,
        textures=texture_args,
    log:
        f"{RESULTS}/logs/data/textured.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/textured.tsv"
    resources:
        **DATA_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.cli textured --set {input.omniglot} --out {output} "
        "--n-textures {params.n_textures} --n-per-character {params.n_per_character} "
        "--dilate {params.dilate} --seed {params.seed} {params.textures} > {log} 2>&1"


rule data_gap:
    input:
        npz=raw_file("train_small.npz"),
        lake=[raw_file("images_background_small1.zip"), raw_file("images_background_small2.zip")],
    output:
        f"{RESULTS}/metrics/data_gap.json",
    params:
        py=PY,
        lake=lake_zip_args,
        maxc=DATA_MAXC_ARG,
    log:
        f"{RESULTS}/logs/data/data_gap.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/data_gap.tsv"
    resources:
        **DATA_RESOURCES,
    conda:
        "../envs/vhe.yaml"
    shell:
        "{params.py:q} -m vhe.data.cli gap --npz {input.npz} {params.lake} --out {output} {params.maxc} > {log} 2>&1"
