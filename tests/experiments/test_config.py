"""experiments.config: defaults, validation messages, profiles, per-model configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from experiments.config import (
    ConfigError,
    config_json,
    dump_json_if_changed,
    load_config,
    load_schema,
    model_config,
    read_config_file,
    training_config,
)

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ["config/config.yaml", "config/cpu.yaml", "config/smoke.yaml", "config/cpu-seeds.yaml"]
ALL_MODELS = {"vae_deconv", "vae_pixelcnn", "hierarchical", "factorial"} | {
    f"{o}_{d}" for o in ("ns", "resample", "rescale", "vhe") for d in ("deconv", "pixelcnn")
}
#: models a profile has beyond ALL_MODELS (the paper's likelihood headline, spatial family)
EXTRA_MODELS = {
    "config/config.yaml": {"hierarchical_pixelcnn"},
}
#: schema keys without a default: absent unless set, so that adding them left every existing
#: per-model config (and so every finished model) unchanged
OPTIONAL_KEYS = {"nets.pixelcnn.global_parents"}


def test_defaults_filled_recursively():
    cfg = load_config({})
    assert cfg["run"] == "paper" and cfg["seed"] == 0 and cfg["device"] == "auto"
    assert cfg["wandb"] == {"mode": "offline", "project": "vhe-reproduction", "entity": None}
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["lr_schedule"] == "cosine"
    assert cfg["nets"]["pixelcnn"] == {"n_layers": 6, "channels": 32, "kernel_size": 5, "cond_channels": 8}
    assert cfg["evaluation"]["episodes"]["ways"] == [5, 20]
    assert cfg["data"]["max_characters"] is None and cfg["data"]["val_fraction"] == 0.1
    assert set(cfg["models"]) == ALL_MODELS
    assert cfg["models"]["ns_pixelcnn"] == {
        "experiment": "class",
        "objective": "ns",
        "decoder": "pixelcnn",
        "nets": {},
        "train": {},
    }
    assert "model" not in cfg


def test_every_schema_key_has_a_default():
    schema = load_schema()

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            if path + (key,) == ("model",):
                continue  # only in per-model configs
            target = sub
            if "$ref" in sub:
                target = {**schema["$defs"][sub["$ref"].split("/")[-1]], **sub}
            assert "default" in target or ".".join(path + (key,)) in OPTIONAL_KEYS, ".".join(path + (key,))
            assert target.get("type") != "object" or target.get("additionalProperties") is not None, key
            walk(target, path + (key,))

    walk(schema, ())


def test_paths_filled_from_run_and_explicit_paths_kept():
    cfg = load_config({"run": "smoke", "paths": {"background": "data/bg.pt"}})
    assert cfg["paths"]["results"] == "results/smoke"
    assert cfg["paths"]["evaluation"] == "resources/smoke/evaluation.pt"
    assert cfg["paths"]["lake_runs"] == "resources/smoke/lake_runs.pt"
    assert cfg["paths"]["background"] == "data/bg.pt"


def test_typo_at_top_level_suggests_the_key():
    with pytest.raises(ConfigError, match=r"unknown key 'trian' at top level; did you mean 'train'\?"):
        load_config({"trian": {"lr": 0.1}})


def test_nested_typo_names_the_section():
    with pytest.raises(ConfigError, match=r"unknown key 'lrr' in train; did you mean 'lr'\?"):
        load_config({"train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"unknown key 'n_layer' in models.m.nets.pixelcnn; did you mean 'n_layers'"):
        load_config({"models": {"m": {"experiment": "class", "nets": {"pixelcnn": {"n_layer": 2}}}}})


def test_wrong_type_names_the_key_path():
    with pytest.raises(ConfigError, match=r"train\.lr: 'abc' is not of type 'number'"):
        load_config({"train": {"lr": "abc"}})
    with pytest.raises(ConfigError, match=r"models\.m\.experiment: 'clas' is not one of"):
        load_config({"models": {"m": {"experiment": "clas"}}})
    with pytest.raises(ConfigError, match=r"wandb\.mode"):
        load_config({"wandb": {"mode": "on"}})


def test_errors_from_a_file_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("run: x\ntrain:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"(?s)bad\.yaml.*train\.batch_size: 'many' is not of type 'integer'"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_model_overrides_stay_partial():
    cfg = load_config({"models": {"m": {"experiment": "class", "nets": {"c_dim": 8}}}})
    assert cfg["models"]["m"]["nets"] == {"c_dim": 8}
    assert cfg["models"]["m"]["objective"] == "vhe" and cfg["models"]["m"]["decoder"] == "deconv"


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_validate_and_list_all_models(profile):
    cfg = load_config(ROOT / profile)
    expected = ALL_MODELS | EXTRA_MODELS.get(profile, set())
    assert {n for n, e in cfg["models"].items() if "replicate_of" not in e} == expected
    assert (
        cfg["run"]
        == {
            "config/config.yaml": "paper",
            "config/cpu.yaml": "cpu",
            "config/smoke.yaml": "smoke",
            "config/cpu-seeds.yaml": "cpu",
        }[profile]
    )
    for name in cfg["models"]:
        m = model_config(cfg, name)["model"]
        assert m["nets"]["pixelcnn"]["n_layers"] >= 1 and m["train"]["max_steps"] >= 1
    raw = read_config_file(ROOT / profile)  # cpu-seeds.yaml: cpu.yaml's (extends)
    assert set(raw["models"]) == expected


def _assert_same_model_configs(cfg, other, names, data_keys=()):
    """The per-model configs of ``names`` in ``cfg`` and ``other`` are byte-identical apart from
    the run name, the paths and the ``data`` settings named in ``data_keys``."""
    for name in names:
        mine, theirs = model_config(cfg, name), model_config(other, name)
        for c in (mine, theirs):
            c.pop("run"), c.pop("paths")
            for key in data_keys:
                c["data"].pop(key)
        assert json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True), name


@pytest.mark.parametrize("profile,kept", [("cpu-spatial.yaml", 4), ("cpu-structured.yaml", 3)])
def test_measurement_profiles_train_cpu_models_unchanged(profile, kept):
    """The profiles that measure part of the cpu profile on its own (`name: null` drops the rest)
    train the cpu profile's models with byte-identical per-model configs, apart from the run name."""
    cpu = load_config(ROOT / "config/cpu.yaml")
    cfg = load_config(ROOT / "config" / profile)
    shared = [n for n in cfg["models"] if n in cpu["models"]]
    assert len(shared) == kept and cfg["run"] != cpu["run"]
    _assert_same_model_configs(cfg, cpu, shared)


def test_the_uncentred_profile_differs_from_cpu_in_centring_alone():
    """config/cpu-uncentred.yaml: the cpu profile's factorial model and its two replicates, on
    drawings without centred ink; the per-model configs differ from the cpu profile's (with
    cpu-seeds' replicates) in data.center_ink, the run name and the paths alone."""
    cfg = load_config(ROOT / "config/cpu-uncentred.yaml")
    seeds = load_config(ROOT / "config/cpu-seeds.yaml")
    assert set(cfg["models"]) == {"factorial", "factorial_seed1", "factorial_seed2"}
    assert cfg["run"] != seeds["run"] and cfg["data"]["center_ink"] is False and seeds["data"]["center_ink"] is True
    _assert_same_model_configs(cfg, seeds, cfg["models"], data_keys=("center_ink",))


def test_model_config_merges_overrides():
    cfg = load_config(
        {
            "nets": {"c_dim": 32},
            "train": {"lr": 0.01},
            "models": {
                "a": {
                    "experiment": "class",
                    "decoder": "pixelcnn",
                    "nets": {"pixelcnn": {"n_layers": 2}},
                    "train": {"max_steps": 7},
                },
                "b": {"experiment": "vae"},
            },
        }
    )
    mc = model_config(cfg, "a")
    m = mc["model"]
    assert m["name"] == "a" and m["experiment"] == "class" and m["objective"] == "vhe" and m["decoder"] == "pixelcnn"
    assert m["nets"]["c_dim"] == 32 and m["nets"]["pixelcnn"]["n_layers"] == 2
    assert m["nets"]["pixelcnn"]["channels"] == cfg["nets"]["pixelcnn"]["channels"]
    assert m["train"]["max_steps"] == 7 and m["train"]["lr"] == 0.01
    assert cfg["nets"]["pixelcnn"]["n_layers"] == 6 and "model" not in cfg  # input untouched
    assert set(mc["models"]) == {"a"}  # editing model b must not change a's file
    assert mc["evaluation"] == cfg["evaluation"] and mc["paths"] == cfg["paths"]
    assert load_config(mc) == mc  # self-contained and valid
    mb = model_config(cfg, "b")
    assert mb["model"]["train"]["max_steps"] == cfg["train"]["max_steps"]
    with pytest.raises(ConfigError, match="unknown model 'aa'"):
        model_config(cfg, "aa")


def test_per_model_json_unchanged_when_another_model_changes(tmp_path):
    base = {"models": {"a": {"experiment": "class"}, "b": {"experiment": "vae"}}}
    first = model_config(load_config(base), "a")
    base["models"]["b"]["train"] = {"lr": 0.5}
    assert model_config(load_config(base), "a") == first


def test_training_config_depends_on_textures_only_for_factorial():
    base = {"models": {"a": {"experiment": "class"}, "f": {"experiment": "factorial"}}, "evaluation": {"n_samples": 3}}
    first = {m: training_config(load_config(base), m) for m in ("a", "f")}
    assert "evaluation" not in first["a"] and "textures" not in first["a"] and "textures" in first["f"]
    base["textures"] = {"n_per_character": 7}
    base["evaluation"] = {"n_samples": 9}
    assert training_config(load_config(base), "a") == first["a"]  # not retrained
    assert training_config(load_config(base), "f")["textures"]["n_per_character"] == 7


def test_dump_json_if_changed_keeps_mtime(tmp_path):
    p = tmp_path / "sub" / "m.json"
    obj = {"b": 1, "a": [1, 2]}
    assert dump_json_if_changed(obj, p) is True
    assert json.loads(p.read_text()) == obj
    os.utime(p, (1_000_000, 1_000_000))
    assert dump_json_if_changed({"a": [1, 2], "b": 1}, p) is False
    assert p.stat().st_mtime == 1_000_000
    assert dump_json_if_changed({"a": [1, 2], "b": 2}, p) is True
    assert p.stat().st_mtime != 1_000_000 and json.loads(p.read_text())["b"] == 2
    assert not [f for f in p.parent.iterdir() if f.name != "m.json"]  # no temporary files left


def test_schema_offers_exactly_the_library_estimators():
    """evaluation.estimators and the learning curve's method accept what vhe.evaluate.classify does."""
    from vhe.evaluate import CLASSIFY_METHODS

    ev = load_schema()["properties"]["evaluation"]["properties"]
    assert set(ev["estimators"]["items"]["enum"]) == set(CLASSIFY_METHODS)
    assert set(ev["estimators"]["default"]) == set(CLASSIFY_METHODS)
    assert load_config({"evaluation": {"estimators": ["symmetric"]}})["evaluation"]["estimators"] == ["symmetric"]
    with pytest.raises(ConfigError, match="estimators"):
        load_config({"evaluation": {"estimators": ["nearest"]}})


# --------------------------------------------------------------------------- bounded, confined inputs
@pytest.mark.parametrize("run", ["../escape", "a/b", "x y", "$(touch pwned)", ".hidden", "", "a" * 65])
def test_run_name_must_be_a_plain_identifier(run):
    with pytest.raises(ConfigError, match=r"^invalid configuration:\n  run: "):
        load_config({"run": run})


@pytest.mark.parametrize("name", ["../m", "m;rm -rf x", "a.b"])
def test_model_names_must_be_plain_identifiers(name):
    with pytest.raises(ConfigError, match="models"):
        load_config({"models": {name: {"experiment": "vae"}}})


@pytest.mark.parametrize("path", ["/etc/x.pt", "../x.pt", "resources/../../x.pt", "a/`id`.pt", "a b.pt", "x;y"])
def test_paths_stay_below_the_working_directory(path):
    with pytest.raises(ConfigError, match="paths.background"):
        load_config({"paths": {"background": path}})


def test_absolute_paths_only_where_documented():
    cfg = load_config({"data": {"mirror": "/srv/mirror"}, "paths": {"resume_store": "/shared/vhe/{run}"}})
    assert cfg["paths"]["resume_store"] == "/shared/vhe/paper"
    for bad in (
        {"data": {"mirror": "/srv/../etc"}},
        {"paths": {"resume_store": "x;rm"}},
        {"textures": {"source": "$(id)"}},
    ):
        with pytest.raises(ConfigError):
            load_config(bad)


@pytest.mark.parametrize(
    "key, value",
    [
        (("train", "lr"), float("nan")),
        (("train", "lr"), float("inf")),
        (("data", "val_fraction"), float("nan")),
        (("nets", "hidden"), 2**40),
        (("evaluation", "n_samples"), 10**12),
        (("seed",), 2**40),
        (("seed",), -1),
    ],
)
def test_numbers_are_finite_and_bounded(key, value):
    cfg = {}
    node = cfg
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = value
    with pytest.raises(ConfigError, match=".".join(key)):
        load_config(cfg)


def test_yaml_nan_in_a_file_names_the_file_and_key(tmp_path):
    p = tmp_path / "nan.yaml"
    p.write_text("train:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=r"nan.yaml.*train\.lr"):
        load_config(p)


def test_every_number_in_the_schema_has_a_maximum():
    missing = []

    def walk(node, path):
        if isinstance(node, dict):
            types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
            if ({"integer", "number"} & set(types)) and "maximum" not in node and "exclusiveMaximum" not in node:
                missing.append(path)
            for k, v in node.items():
                if k != "default":
                    walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(load_schema(), "")
    assert not missing, missing


def test_yaml_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert p.stat().st_size < 1000
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "bomb.yaml" in str(e.value) and "aliases" in str(e.value)
    assert len(str(e.value)) < 500


def test_profile_aliases_are_still_accepted():
    cpu = load_config(ROOT / "config" / "cpu.yaml")["models"]  # YAML anchors and aliases (&spatial, *spatial)
    assert cpu["resample_deconv"]["nets"] == cpu["ns_deconv"]["nets"] == {"family": "spatial"}
    assert cpu["hierarchical"]["nets"] == {"family": "spatial"}
    assert cpu["hierarchical"]["train"] == cpu["vhe_deconv"]["train"] == {"max_steps": 6500}


def test_long_values_are_cut_in_messages():
    with pytest.raises(ConfigError) as e:
        load_config({"run": "x" * 5000})
    assert len(str(e.value)) < 600


# --------------------------------------------------------------------------- run settings
def test_training_config_leaves_out_run_settings():
    cfg = load_config({"device": "cpu", "wandb": {"mode": "disabled"}})
    tc = training_config(cfg, "vhe_deconv")
    assert "device" not in tc and "wandb" not in tc
    other = load_config({"device": "cuda", "wandb": {"mode": "online", "project": "p"}})
    assert training_config(other, "vhe_deconv") == tc  # changing them retrains nothing


def test_with_runtime_applies_only_run_settings():
    from experiments.config import runtime_settings, with_runtime

    base = training_config(load_config({}), "vhe_deconv")
    cfg = with_runtime(base, '{"device": "cpu", "wandb": {"mode": "disabled"}}')
    assert cfg["device"] == "cpu" and cfg["wandb"]["mode"] == "disabled" and cfg["model"]["name"] == "vhe_deconv"
    assert runtime_settings(cfg) == {
        "device": "cpu",
        "wandb": {"mode": "disabled", "project": "vhe-reproduction", "entity": None},
    }
    with pytest.raises(ConfigError, match="--runtime: only device, wandb"):
        with_runtime(base, '{"train": {"lr": 1}}')
    with pytest.raises(ConfigError, match="--runtime"):
        with_runtime(base, '{"device": "tpu"}')
    with pytest.raises(ConfigError, match="--runtime: not a JSON object"):
        with_runtime(base, "{")


# --------------------------------------------------------------------------- replicates (other seeds)
def _replicated(models, seeds, base=None):
    return load_config({**(base or {}), "replicates": {"models": models, "seeds": seeds}})


def test_replicates_expand_into_models_with_their_seed_and_origin():
    cfg = _replicated(["vhe_deconv", "factorial"], [1, 2], {"seed": 7})
    assert "replicates" not in cfg  # consumed: the resolved config only lists models
    names = list(cfg["models"])
    assert names[: len(ALL_MODELS)] == list(load_config({})["models"])  # the models first, unchanged
    assert names[len(ALL_MODELS) :] == ["vhe_deconv_seed1", "vhe_deconv_seed2", "factorial_seed1", "factorial_seed2"]
    rep = cfg["models"]["vhe_deconv_seed2"]
    assert rep == {**cfg["models"]["vhe_deconv"], "seed": 2, "replicate_of": "vhe_deconv"}
    assert cfg["models"]["factorial_seed1"]["replicate_of"] == "factorial"
    assert load_config(cfg) == cfg  # idempotent


def test_a_replicate_trains_and_evaluates_with_its_seed():
    cfg = _replicated(["vhe_deconv"], [3], {"seed": 7})
    mc = model_config(cfg, "vhe_deconv_seed3")
    assert mc["seed"] == 3 and mc["model"]["replicate_of"] == "vhe_deconv" and mc["model"]["name"] == "vhe_deconv_seed3"
    assert mc["model"]["nets"] == model_config(cfg, "vhe_deconv")["model"]["nets"]
    assert load_config(mc) == mc  # the per-model file is self-contained (the trainer and evaluators read it)
    base = model_config(cfg, "vhe_deconv")
    assert base["seed"] == 7 and "replicate_of" not in base["model"]
    tc = training_config(cfg, "vhe_deconv_seed3")
    assert {k for k in tc if k not in ("seed", "model", "models")} == {
        k for k in training_config(cfg, "vhe_deconv") if k not in ("seed", "model", "models")
    }


@pytest.mark.parametrize("profile", ["config/smoke.yaml", "config/cpu.yaml"])
def test_adding_replicates_leaves_every_other_model_config_unchanged(profile):
    raw = yaml.safe_load((ROOT / profile).read_text())
    raw.pop("replicates", None)
    plain = load_config(raw)
    seeded = load_config({**raw, "replicates": {"models": ["vhe_deconv", "ns_pixelcnn", "factorial"], "seeds": [1, 2]}})
    assert len(seeded["models"]) == len(plain["models"]) + 6
    for name in plain["models"]:  # the same text: adding seeds to a finished run retrains nothing trained
        assert config_json(training_config(seeded, name)) == config_json(training_config(plain, name)), name


def test_cpu_seeds_profile_is_the_cpu_profile_plus_replicates():
    seeds, cpu = load_config(ROOT / "config/cpu-seeds.yaml"), load_config(ROOT / "config/cpu.yaml")
    reps = {n: e["replicate_of"] for n, e in seeds["models"].items() if "replicate_of" in e}
    assert set(reps.values()) == {"vhe_deconv", "ns_deconv", "vhe_pixelcnn", "ns_pixelcnn", "factorial"}
    assert {e["seed"] for n, e in seeds["models"].items() if n in reps} == {1, 2} and len(reps) == 10
    assert {k: v for k, v in seeds.items() if k != "models"} == {k: v for k, v in cpu.items() if k != "models"}
    assert {n: e for n, e in seeds["models"].items() if n not in reps} == cpu["models"]
    for name in cpu["models"]:  # same run, same models: it trains only the replicates
        assert training_config(seeds, name) == training_config(cpu, name), name
    assert "make estimate CONFIG=config/cpu-seeds.yaml" in (ROOT / "config/cpu-seeds.yaml").read_text()


def test_smoke_profile_trains_one_replicate_of_the_deconv_pair():
    models = load_config(ROOT / "config/smoke.yaml")["models"]
    reps = {n: (e["replicate_of"], e["seed"]) for n, e in models.items() if "replicate_of" in e}
    assert reps == {"vhe_deconv_seed1": ("vhe_deconv", 1), "ns_deconv_seed1": ("ns_deconv", 1)}


@pytest.mark.parametrize(
    "replicates, match",
    [
        (
            {"models": ["vhe_dcnv"], "seeds": [1]},
            r"replicates\.models\.0: 'vhe_dcnv' is not a model; did you mean 'vhe_deconv'",
        ),
        ({"models": ["vhe_deconv", "nope"], "seeds": [1]}, r"replicates\.models\.1: 'nope' is not a model"),
        ({"models": ["../x"], "seeds": [1]}, r"replicates\.models\.0"),
        ({"models": ["vhe_deconv"], "seeds": [1, 0]}, r"replicates\.seeds\.1: 0 is the seed 'vhe_deconv' trains with"),
        ({"models": ["vhe_deconv"], "seeds": [-1]}, r"replicates\.seeds\.0"),
        ({"models": ["vhe_deconv"], "seeds": [2**40]}, r"replicates\.seeds\.0"),
        ({"models": ["vhe_deconv"], "seeds": [1, 1]}, r"replicates\.seeds"),
        ({"models": ["vhe_deconv"], "seeds": "1"}, r"replicates\.seeds"),
        ({"model": ["vhe_deconv"], "seeds": [1]}, r"unknown key 'model' in replicates; did you mean 'models'"),
    ],
)
def test_bad_replicates_name_the_key(replicates, match):
    with pytest.raises(ConfigError, match=match):
        load_config({"replicates": replicates})


def test_replicate_names_must_be_free_plain_and_not_replicates_themselves():
    taken = {
        "models": {"m": {"experiment": "class"}, "m_seed1": {"experiment": "vae"}},
        "replicates": {"models": ["m"], "seeds": [1]},
    }
    with pytest.raises(ConfigError, match=r"replicates: 'm_seed1' .* is already the name of another entry"):
        load_config(taken)
    long = "m" * 62
    with pytest.raises(ConfigError, match=r"replicates\.models\.0: the replicate name 'm+_seed1' is not allowed"):
        load_config({"models": {long: {"experiment": "class"}}, "replicates": {"models": [long], "seeds": [1]}})
    cfg = _replicated(["vhe_deconv"], [1])
    with pytest.raises(ConfigError, match=r"'vhe_deconv_seed1' is itself a replicate \(of 'vhe_deconv'\)"):
        load_config({**cfg, "replicates": {"models": ["vhe_deconv_seed1"], "seeds": [2]}})


def test_replicate_seeds_from_snakemake_config_text_are_integers():
    # `snakemake --config 'replicates={models: [vhe_deconv], seeds: [1]}'` passes nested values as text
    cfg = load_config({"replicates": {"models": ["vhe_deconv"], "seeds": ["1"]}})
    assert cfg["models"]["vhe_deconv_seed1"]["seed"] == 1
    with pytest.raises(ConfigError, match=r"replicates\.seeds\.0"):
        load_config({"replicates": {"models": ["vhe_deconv"], "seeds": ["one"]}})


def test_no_replicates_by_default():
    assert all("replicate_of" not in e and "seed" not in e for e in load_config({})["models"].values())
    assert load_config({"replicates": {"models": ["vhe_deconv"], "seeds": []}})["models"] == load_config({})["models"]


def test_evaluation_for_applies_the_decoders_non_null_overrides():
    from experiments.config import evaluation_for

    cfg = load_config(
        {
            "evaluation": {
                "n_samples": 50,
                "classification_samples": 10,
                "max_elements": 256,
                "per_decoder": {
                    "pixelcnn": {"n_samples": 5, "classification_samples": None},
                    "deconv": {"max_elements": 64},
                },
            }
        }
    )
    pix = evaluation_for(cfg, "pixelcnn")
    assert pix["n_samples"] == 5 and pix["classification_samples"] == 10  # null: the section's value
    assert pix["max_elements"] == 256 and "per_decoder" not in pix
    assert evaluation_for(cfg["evaluation"], "deconv")["max_elements"] == 64  # the section itself works too
    plain = {k: v for k, v in cfg["evaluation"].items() if k != "per_decoder"}
    assert evaluation_for(cfg, None) == plain == evaluation_for(cfg, "no_such_decoder")
    pix["episodes"]["ways"].append(99)  # a copy: the config is untouched
    assert 99 not in cfg["evaluation"]["episodes"]["ways"]
    assert evaluation_for({"n_samples": 3}, "deconv") == {"n_samples": 3}  # no per_decoder at all


def test_a_profile_extends_another_in_its_folder(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "run: base1\ntrain: {lr: 0.01, max_steps: 5}\nmodels:\n  m: {experiment: vae}\n"
    )
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain: {max_steps: 9}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg["run"] == "base1" and cfg["train"]["lr"] == 0.01 and cfg["train"]["max_steps"] == 9
    assert set(cfg["models"]) == {"m"} and "extends" not in cfg
    for bad, match in (
        ("../base.yaml", "expected the file name"),
        ("/etc/x.yaml", "expected the file name"),
        ("child.yaml", "loop"),
        ("missing.yaml", "does not exist"),
        ("[1]", "expected the file name"),
    ):
        (tmp_path / "child.yaml").write_text(f"extends: {bad}\n")
        with pytest.raises(ConfigError, match=match):
            load_config(tmp_path / "child.yaml")
    with pytest.raises(ConfigError, match="unknown key 'extends'"):  # only a file may extend one
        load_config({"extends": "base.yaml"})


def test_an_extending_profile_drops_a_base_model_with_null(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "run: base1\nmodels:\n  a: {experiment: vae}\n  b: {experiment: class, decoder: deconv}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nmodels:\n  a: null\n  c: {experiment: class, decoder: pixelcnn}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert list(cfg["models"]) == ["b", "c"]
    assert set(load_config(tmp_path / "base.yaml")["models"]) == {"a", "b"}  # the base file is unchanged
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nmodels:\n  a: null\n  b: null\n")
    with pytest.raises(ConfigError, match="models"):  # nothing left to train is still an invalid config
        load_config(tmp_path / "child.yaml")


def test_command_line_values_become_numbers_booleans_and_null():
    from experiments.config import command_line_values

    got = command_line_values(
        {
            "train": {
                "max_steps": "100",
                "lr": "1e-3",
                "grad_clip": "null",
                "amp": "false",
                "name": "abc",
                "seeds": ["1", "2"],
            },
            "run": "x1",
        }
    )
    assert got == {
        "train": {"max_steps": 100, "lr": 1e-3, "grad_clip": None, "amp": False, "name": "abc", "seeds": [1, 2]},
        "run": "x1",
    }
    assert load_config({"train": command_line_values({"max_steps": "100"})})["train"]["max_steps"] == 100


def test_a_vector_models_config_and_fingerprint_ignore_the_spatial_settings():
    from experiments.config import without_inactive_settings
    from experiments.trainer import _fingerprint

    cfg = load_config(ROOT / "config" / "cpu.yaml")
    tc = training_config(cfg, "factorial")  # a vector model of the cpu profile
    assert "family" not in tc["nets"] and "spatial" not in tc["nets"]
    assert "family" not in tc["model"]["nets"] and "spatial" not in tc["model"]["nets"]
    mc = model_config(cfg, "factorial")
    other = model_config(load_config({**dict(cfg), "nets": {**cfg["nets"], "spatial": {"c_channels": 3}}}), "factorial")
    assert _fingerprint(mc) == _fingerprint(other)  # a vector model ignores nets.spatial
    paper = load_config(ROOT / "config" / "config.yaml")
    spatial = training_config(paper, "vhe_pixelcnn")
    assert spatial["model"]["nets"]["family"] == "spatial" and "spatial" in spatial["model"]["nets"]
    assert without_inactive_settings(spatial) == spatial


# --------------------------------------------------------------------------- compare_with
def _compared(compare_with, **extra):
    """A config whose hierarchical model names ``compare_with`` (plus a matched class model)."""
    models = {
        "vhe_deconv": {"experiment": "class"},
        "vhe_matched": {"experiment": "class", "train": {"max_steps": 5}},
        "vae_deconv": {"experiment": "vae"},
        "hierarchical": {"experiment": "hierarchical", "compare_with": compare_with},
    }
    return {"models": models, **extra}


def test_compare_with_names_a_class_model_and_retrains_nothing():
    cfg = load_config(_compared("vhe_matched"))
    assert cfg["models"]["hierarchical"]["compare_with"] == "vhe_matched"
    plain = load_config({"models": {k: v for k, v in _compared(None)["models"].items() if k != "hierarchical"}})
    plain["models"]["hierarchical"] = {"experiment": "hierarchical", "nets": {}, "train": {}}
    # an evaluation setting: not in the per-model (training) config, which loads on its own
    assert training_config(cfg, "hierarchical") == training_config(load_config(plain), "hierarchical")
    assert "compare_with" not in model_config(cfg, "hierarchical")["models"]["hierarchical"]
    assert load_config(model_config(cfg, "hierarchical"))["model"]["name"] == "hierarchical"


@pytest.mark.parametrize(
    "config, match",
    [
        (
            _compared("vhe_dconv"),
            r"models\.hierarchical\.compare_with: 'vhe_dconv' is not a model; did you mean 'vhe_deconv'",
        ),
        (
            _compared("nothing_like_it"),
            r"'nothing_like_it' is not a model \(class-structured models: vhe_deconv, vhe_matched\)",
        ),
        (
            _compared("vae_deconv"),
            r"models\.hierarchical\.compare_with: 'vae_deconv' is a 'vae' model; name a class-structured",
        ),
        (_compared("hierarchical"), r"'hierarchical' is a 'hierarchical' model; name a class-structured"),
        (
            {"models": {"a": {"experiment": "class", "compare_with": "b"}, "b": {"experiment": "class"}}},
            r"models\.a\.compare_with: only a hierarchical model is compared with a class-structured model",
        ),
        (_compared("../x"), r"models\.hierarchical\.compare_with: '\.\./x' is not allowed"),
    ],
)
def test_a_bad_compare_with_names_the_key(config, match):
    with pytest.raises(ConfigError, match=match):
        load_config(config)


def test_compare_with_errors_from_a_file_name_the_file(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(_compared("vae_deconv")))
    with pytest.raises(ConfigError, match=r"p\.yaml: models\.hierarchical\.compare_with"):
        load_config(p)


def test_replicates_keep_compare_with_valid():
    cfg = load_config(_compared("vhe_matched", replicates={"models": ["hierarchical", "vhe_matched"], "seeds": [1]}))
    assert cfg["models"]["hierarchical_seed1"]["compare_with"] == "vhe_matched"


# --------------------------------------------------------------------------- evaluation.structured
def test_structured_evaluation_settings_have_defaults_and_bounds():
    ev = load_config({})["evaluation"]
    assert ev["structured"] == {
        "context_images": None,
        "nll_classes": 30,
        "oneshot_ways": 20,
        "oneshot_episodes": 1,
        "style_alphabet_samples": 10,
        "style_new": 10,
    }
    with pytest.raises(ConfigError, match=r"evaluation\.structured\.oneshot_ways"):
        load_config({"evaluation": {"structured": {"oneshot_ways": 1}}})
    with pytest.raises(ConfigError, match=r"evaluation\.structured\.oneshot_episodes"):
        load_config({"evaluation": {"structured": {"oneshot_episodes": 0}}})
    with pytest.raises(ConfigError, match=r"evaluation\.structured\.style_new"):
        load_config({"evaluation": {"structured": {"style_new": 0}}})
    with pytest.raises(ConfigError, match=r"unknown key 'context_image' in evaluation\.structured"):
        load_config({"evaluation": {"structured": {"context_image": 3}}})


def test_structured_evaluation_settings_change_no_training_config():
    from experiments.config import evaluation_for

    base = {"models": {"h": {"experiment": "hierarchical"}, "c": {"experiment": "class"}}}
    changed = {**base, "evaluation": {"structured": {"context_images": 4, "oneshot_ways": 5}}}
    for m in ("h", "c"):
        assert training_config(load_config(changed), m) == training_config(load_config(base), m)
    ev = evaluation_for(load_config(changed), "deconv")
    assert ev["structured"] == {
        "context_images": 4,
        "nll_classes": 30,
        "oneshot_ways": 5,
        "oneshot_episodes": 1,
        "style_alphabet_samples": 10,
        "style_new": 10,
    }
