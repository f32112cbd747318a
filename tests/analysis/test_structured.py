"""analysis.structured (the CLI) end to end on a tiny synthetic setup: the hierarchical and factorial CLIs
write their figures (PNG + PDF) and a metrics JSON with the documented keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from analysis import structured as st
from experiments.checkpoints import save_checkpoint
from experiments.config import load_config, model_config
from experiments.registry import build_experiment
from tests.experiments import below_cwd, make_set, tiny_config
from vhe.data import OmniglotSet, procedural_textures, textured_omniglot

MODELS = {
    "hierarchical": {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv"},
    "factorial": {"experiment": "factorial", "objective": "vhe", "decoder": "deconv"},
    "vhe_deconv": {"experiment": "class", "objective": "vhe", "decoder": "deconv"},
}
N_TEX = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # config paths are relative to the working directory
        yield _setup(root)


def _setup(root):
    res = root / "resources"
    bg = make_set(res / "background.pt", n_chars=12, n_per=6, n_alphabets=3, seed=0)
    make_set(res / "evaluation.pt", n_chars=12, n_per=6, n_alphabets=3, seed=1)
    textured_omniglot(OmniglotSet.load(bg), procedural_textures(N_TEX), 4, seed=0).save(res / "textured.pt")
    cfg = load_config(
        tiny_config(
            root,
            models=MODELS,
            paths={"evaluation": below_cwd(res / "evaluation.pt"), "textured": below_cwd(res / "textured.pt")},
            evaluation={"n_samples": 2, "max_classes": 4, "seed": 0},
        )
    )
    configs, ckpts = {}, {}
    for name in MODELS:
        mcfg = model_config(cfg, name)
        configs[name] = root / "configs" / f"{name}.json"
        configs[name].parent.mkdir(parents=True, exist_ok=True)
        configs[name].write_text(json.dumps(mcfg))
        ckpts[name] = root / "checkpoints" / name / "best.pt"
        ckpts[name].parent.mkdir(parents=True, exist_ok=True)
        if name == "factorial":  # a real trainer checkpoint (2 steps)
            from experiments.trainer import train

            train(mcfg, ckpts[name].parent, max_steps=2)
        else:  # an untrained model in the trainer's best.pt format
            torch.manual_seed(0)
            exp = build_experiment(mcfg, "cpu")
            save_checkpoint({"model": exp.model.state_dict(), "step": 0, "config": mcfg}, ckpts[name])
    return root, configs, ckpts


def run_cli(root, configs, ckpts, name, *extra):
    out = root / "metrics" / f"{name}_structured.json"
    figs = root / "figures"
    rc = st.main(
        [
            "--config",
            str(configs[name]),
            "--checkpoint",
            str(ckpts[name]),
            "--out",
            str(out),
            "--figures",
            str(figs),
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )
    return rc, out, figs


def assert_figure(path: Path):
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 50
    assert path.with_suffix(".pdf").is_file() and path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"


def test_hierarchical_cli(setup):
    root, configs, ckpts = setup
    rc, out, figs = run_cli(
        root,
        configs,
        ckpts,
        "hierarchical",
        "--class-checkpoint",
        str(ckpts["vhe_deconv"]),
        "--class-config",
        str(configs["vhe_deconv"]),
        "--n-alphabets",
        "2",
        "--nll-classes",
        "3",
        "--n-shown",
        "1",
        "--style-new",
        "3",
    )
    assert rc == 0
    assert_figure(figs / "hierarchical_samples.png")
    m = json.loads(out.read_text())
    assert m["model"] == "hierarchical" and m["experiment"] == "hierarchical"
    es = m["evaluation_set"]
    assert es["target_characters"] == 4 and es["targets"] == 4 * 6 and es["alphabets"] == 3
    assert es["k_shot"] == {"a": 10, "c": 3, "z": 1}
    assert isinstance(m["bound_per_image"], float) and m["bound_per_image"] < 0 and m["bound_se"] > 0
    assert set(m["kl"]) == {"a", "c", "z"}
    cm = m["class_model"]
    assert cm["name"] == "vhe_deconv" and cm["k_shot"] == {"c": 3, "z": 1} and set(cm["kl"]) == {"c", "z"}
    assert cm["same_training_steps"] is True  # both untrained checkpoints: step 0
    assert cm["val_bound_at_matched_step"] is None  # untrained: no history to compare
    assert m["alphabet_improves_bound"] == (m["bound_per_image"] > cm["bound_per_image"])
    assert m["bound_difference"] == pytest.approx(m["bound_per_image"] - cm["bound_per_image"], abs=1e-6)
    assert m["nll"]["n_samples"] == 2 and m["nll"]["characters"] == 3
    assert m["nll"]["nll_per_image"] > 0 and m["nll"]["class_nll_per_image"] > 0
    assert m["nll"]["nll_improvement"] == pytest.approx(m["nll"]["class_nll_per_image"] - m["nll"]["nll_per_image"])
    assert len(m["figure_facts"]) == 2 and m["figure_facts"][0]["D_a_images"] > 0
    sty = m["alphabet_style"]
    assert sty["alphabets"] == 3 and sty["alphabet_samples"] == 10 and sty["new_per_alphabet_sample"] == 3
    assert sty["new_per_alphabet"] == 30 and sty["chance"] == pytest.approx(1 / 3)
    assert 0.0 <= sty["accuracy"] <= 1.0 and 0.0 <= sty["classifier_accuracy_real"] <= 1.0
    lo, hi = sty["accuracy_ci95"]
    assert lo <= sty["accuracy"] <= hi
    assert set(sty["controls"]) == {"prior_a", "class_model"}
    assert 0.0 <= sty["controls"]["class_model"]["accuracy"] <= 1.0
    # the alphabet-context likelihood: the same characters as nll (all 3 have other characters in their alphabet)
    ctx = m["context_nll"]
    assert ctx["characters"] == 3 and ctx["n_samples"] == 2 and ctx["context_images"] == 10
    assert ctx["nll_no_context_per_image"] == pytest.approx(m["nll"]["nll_per_image"])
    assert ctx["nll_context_per_image"] > 0 and ctx["context_gain_se"] > 0
    assert ctx["context_gain"] == pytest.approx(ctx["nll_no_context_per_image"] - ctx["nll_context_per_image"])
    assert ctx["context_gain_ci95"][0] < ctx["context_gain"] < ctx["context_gain_ci95"][1]
    assert ctx["context_gain_vs_class"] == pytest.approx(ctx["class_nll_per_image"] - ctx["nll_context_per_image"])
    assert len(ctx["per_character"]) == 3
    one = m["oneshot_context"]
    assert one["episodes"] == 3 and one["chance"] == pytest.approx(1 / 3)  # 4 characters per alphabet: 3-way
    for arm in ("with_context", "prior_a", "no_context", "class_model"):
        assert one[arm]["n_trials"] == 9 and 0.0 <= one[arm]["accuracy"] <= 1.0
    assert {"mcnemar_vs_no_context", "mcnemar_vs_prior_a", "mcnemar_vs_class_model"} <= set(one)
    from analysis.metric_rows import structured_rows

    rows = structured_rows(
        "hierarchical", {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv"}, m, "test"
    )
    metrics = {(r["metric"], r["estimator"]) for r in rows}
    assert {
        ("nll_context", None),
        ("context_gain", None),
        ("context_gain_vs_class", None),
        ("oneshot_accuracy", "with_context"),
        ("oneshot_accuracy", "no_context"),
        ("alphabet_style_class_model", None),
        ("alphabet_style_prior_a", None),
    } <= metrics
    assert all(r["unit"] for r in rows)
    p = m["provenance"]
    assert {"git_commit", "torch", "date", "seed"} <= set(p) and p["seed"] == 0


def test_hierarchical_cli_without_class_model_is_deterministic(setup):
    root, configs, ckpts = setup
    rc, out, _ = run_cli(root, configs, ckpts, "hierarchical", "--n-samples", "0", "--n-alphabets", "1")
    assert rc == 0
    m1 = json.loads(out.read_text())
    assert m1["class_model"] is None and m1["alphabet_improves_bound"] is None and "nll" not in m1
    assert "context_nll" not in m1 and "class_model" not in m1["oneshot_context"]
    run_cli(root, configs, ckpts, "hierarchical", "--n-samples", "0", "--n-alphabets", "1")
    m2 = json.loads(out.read_text())
    assert m1["bound_per_image"] == m2["bound_per_image"]


def test_factorial_cli(setup):
    root, configs, ckpts = setup
    rc, out, figs = run_cli(
        root,
        configs,
        ckpts,
        "factorial",
        "--grid-rows",
        "3",
        "--grid-cols",
        "4",
        "--swap-pairs",
        "2",
        "--metric-rows",
        "3",
    )
    assert rc == 0
    for stem in ("factorial_grid", "factorial_swap", "factorial_samples"):
        assert_figure(figs / f"{stem}.png")
    m = json.loads(out.read_text())
    assert m["model"] == "factorial" and m["checkpoint_step"] == 2
    assert m["grid_rows"] == 3 and m["grid_columns"] == N_TEX and m["cells"] == 3 * N_TEX
    for key in ("texture", "character"):
        for sub in ("accuracy", "chance", "classifier_accuracy_real"):
            assert 0.0 <= m[key][sub] <= 1.0
    assert m["texture"]["chance"] == pytest.approx(1 / N_TEX) and m["character"]["chance"] == pytest.approx(1 / 3)
    assert 0.0 <= m["both_accuracy"] <= min(m["texture"]["accuracy"], m["character"]["accuracy"])
    assert len(m["figures"]) == 6
    # the diagnostics (tested on hand-built models in tests/analysis/test_factorial.py)
    assert set(m["kl"]) == {"c", "t", "z"} and m["kl_episodes"]["n_targets"] > 0
    assert set(m["kl_episodes"]["se"]) == {"c", "t", "z"}
    sw = m["t_swap"]
    assert sw["cells"] == 3 * N_TEX and sw["chance"] == pytest.approx(1 / N_TEX)
    for key in ("follows_t", "follows_original_t", "changed", "both"):
        assert 0.0 <= sw[key] <= 1.0
    tex = m["texture"]
    assert 0.0 <= tex["follows_row"] <= 1.0 and tex["follows_row_chance"] == pytest.approx(1 / N_TEX)
    rob = m["texture_robustness"]
    assert [f["flip_rate"] for f in rob["flips"]] == [0.02, 0.05] and rob["n_images"] > 0
    from analysis.metric_rows import structured_rows

    rows = structured_rows("factorial", {"experiment": "factorial", "objective": "vhe", "decoder": "deconv"}, m, "test")
    metrics = {r["metric"] for r in rows}
    assert {
        "kl_c",
        "kl_t",
        "kl_z",
        "t_swap_follows_t",
        "t_swap_changed",
        "t_swap_chance",
        "texture_follows_row",
        "texture_follows_row_chance",
        "texture_real_flip2pct",
        "texture_real_flip5pct",
    } <= metrics
    assert all(r["unit"] in ("fraction", "nats") for r in rows)


def test_rejects_class_models(setup):
    root, configs, ckpts = setup
    rc, _, _ = run_cli(root, configs, ckpts, "vhe_deconv")
    assert rc == 2


def test_structured_settings_come_from_the_config_unless_a_flag_is_given():
    section = {
        "structured": {
            "context_images": None,
            "nll_classes": 9,
            "oneshot_ways": 7,
            "oneshot_episodes": 2,
            "style_alphabet_samples": 2,
            "style_new": 4,
        }
    }
    base = ["--config", "c.json", "--checkpoint", "b.pt", "--out", "m.json", "--figures", "f"]
    args = st.structured_settings(st.parse_args(base), section)
    got = (args.context_images, args.oneshot_ways, args.oneshot_episodes, args.style_alphabet_samples)
    assert got == (None, 7, 2, 2) and args.nll_classes == 9 and args.style_new == 4
    flags = ["--context-images", "4", "--oneshot-ways", "3", "--oneshot-episodes", "6", "--style-alphabet-samples", "5"]
    args = st.structured_settings(st.parse_args(base + flags + ["--style-new", "8"]), section)
    got = (args.context_images, args.oneshot_ways, args.oneshot_episodes, args.style_alphabet_samples)
    assert got == (4, 3, 6, 5) and args.style_new == 8
    bad_flags = (["--oneshot-ways", "1"], ["--oneshot-episodes", "0"], ["--context-images", "0"], ["--style-new", "0"])
    for bad in bad_flags + (["--style-alphabet-samples", "x"],):
        with pytest.raises(SystemExit):
            st.parse_args(base + bad)


def test_hierarchical_cli_reads_the_structured_settings_and_flags_override_them(setup):
    root, configs, ckpts = setup
    ev = load_config(json.loads(configs["hierarchical"].read_text()))["evaluation"]
    ev["structured"] = {
        "context_images": 3,
        "nll_classes": 30,
        "oneshot_ways": 2,
        "oneshot_episodes": 1,
        "style_alphabet_samples": 2,
        "style_new": 2,
    }
    evaluation = root / "evaluation_structured.json"
    evaluation.write_text(json.dumps(ev))
    common = ("--evaluation", str(evaluation), "--n-samples", "0", "--n-alphabets", "1", "--n-shown", "1")
    rc, out, _ = run_cli(root, configs, ckpts, "hierarchical", *common)
    assert rc == 0
    m = json.loads(out.read_text())
    one, sty = m["oneshot_context"], m["alphabet_style"]
    assert one["ways"] == 2 and {e["ways"] for e in one["per_episode"]} == {2}
    # every phase timed (the cost model and the results pages read eval_seconds)
    assert {"bounds", "oneshot_context", "alphabet_style", "samples_figure", "total"} <= set(m["eval_seconds"])
    assert m["eval_seconds"]["total"] >= m["eval_seconds"]["oneshot_context"] > 0
    assert {e["context_images"] for e in one["per_episode"]} == {3}
    assert sty["alphabet_samples"] == 2 and sty["new_per_alphabet"] == 2 * 2
    n_episodes = one["episodes"]
    flags = ("--context-images", "5", "--oneshot-ways", "3", "--oneshot-episodes", "2", "--style-alphabet-samples", "1")
    rc, out, _ = run_cli(root, configs, ckpts, "hierarchical", *common, "--style-new", "3", *flags)
    assert rc == 0
    m = json.loads(out.read_text())
    one, sty = m["oneshot_context"], m["alphabet_style"]
    assert one["ways"] == 3 and {e["ways"] for e in one["per_episode"]} == {3}  # 4 characters per alphabet
    # two episodes per alphabet, each its own trials
    assert one["episodes_per_alphabet"] == 2 and one["episodes"] == 2 * n_episodes
    assert one["with_context"]["n_trials"] == 3 * one["episodes"]
    assert {e["context_images"] for e in one["per_episode"]} == {5}
    assert sty["alphabet_samples"] == 1 and sty["new_per_alphabet"] == 3
