"""analysis.evaluate end to end on a tiny synthetic setup (a few seconds per model on one CPU core).

Synthetic data follow the formats of vhe.data: OmniglotSet dicts (format 'vhe.OmniglotSet'),
one-shot runs (vhe.data.runs.save_runs) and a TexturedSet (vhe.data.textures). Checkpoints are
the trainer's best.pt (2 training steps) or an untrained model saved in the same format.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from analysis import evaluate as ev
from experiments.checkpoints import save_checkpoint
from experiments.config import load_config, model_config
from tests.experiments import below_cwd
from experiments.registry import build_experiment
from vhe.data.runs import OneShotRun, save_runs

NETS = {
    "c_dim": 6,
    "z_dim": 3,
    "a_dim": 4,
    "t_dim": 4,
    "hidden": 16,
    "conv_channels": 4,
    "conv_layers": 2,
    "deconv_channels": 4,
    "pixelcnn": {"n_layers": 2, "channels": 4, "kernel_size": 3, "cond_channels": 2},
}
TRAIN = {
    "batch_size": 8,
    "k_shot": 3,
    "lr": 1e-3,
    "max_steps": 2,
    "val_every": 2,
    "val_batches": 1,
    "checkpoint_every": 2,
    "log_every": 1,
    "sample_every": 0,
    "patience": None,
    "num_threads": 1,
}
MODELS = {
    "vhe_deconv": {"experiment": "class", "objective": "vhe", "decoder": "deconv"},
    "ns_deconv": {"experiment": "class", "objective": "ns", "decoder": "deconv"},
    "vae_deconv": {"experiment": "vae", "decoder": "deconv"},
    "vhe_pixelcnn": {"experiment": "class", "objective": "vhe", "decoder": "pixelcnn"},
    "hierarchical": {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv"},
    "factorial": {"experiment": "factorial", "objective": "vhe", "decoder": "deconv"},
}
N_PER = 8  # drawings per synthetic character
N_EVAL = 6  # evaluation characters
K_SAMPLES = 4  # --n-samples


def blobs(n_chars, n_per, seed):
    """uint8 (n_chars * n_per, 1, 28, 28): each drawing a 1-pixel jitter of its character's blob."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n_chars, 1, 28, 28, generator=g)
    smooth = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    protos = (smooth > smooth.flatten(1).quantile(0.8, dim=1)[:, None, None, None]).to(torch.uint8)
    out = []
    for c in range(n_chars):
        for _ in range(n_per):
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            out.append(torch.roll(protos[c], shifts=(dy, dx), dims=(1, 2)))
    return torch.stack(out)


def save_set(path, n_chars, n_alphabets, seed):
    images = blobs(n_chars, N_PER, seed)
    character = torch.arange(n_chars).repeat_interleave(N_PER)
    alphabet = character * n_alphabets // n_chars
    torch.save(
        {
            "format": "vhe.OmniglotSet",
            "version": 1,
            "images": images,
            "character": character,
            "alphabet": alphabet,
            "drawer": torch.arange(N_PER).repeat(n_chars),
            "character_names": [f"A{c * n_alphabets // n_chars}/character{c:02d}" for c in range(n_chars)],
            "alphabet_names": [f"A{a}" for a in range(n_alphabets)],
            "source": "synthetic",
        },
        path,
    )


def random_runs(n_runs, way, seed):
    """Runs of independent random images: the query says nothing about its class (chance level)."""
    g = torch.Generator().manual_seed(seed)
    runs = []
    for r in range(n_runs):
        support = (torch.rand(way, 1, 28, 28, generator=g) < 0.2).to(torch.uint8)
        query = (torch.rand(way, 1, 28, 28, generator=g) < 0.2).to(torch.uint8)
        runs.append(
            OneShotRun(support=support, query=query, answer=torch.randperm(way, generator=g), name=f"run{r:02d}")
        )
    return runs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # config paths are relative to the working directory
        yield _setup(root)


def _setup(root):
    res = root / "resources"
    res.mkdir()
    save_set(res / "background.pt", 8, 1, seed=0)  # one alphabet: 2-way validation runs exist
    save_set(res / "evaluation.pt", N_EVAL, 2, seed=1)
    save_runs(random_runs(2, 20, seed=2), res / "lake_runs.pt")
    save_runs(random_runs(2, 5, seed=3), res / "within_alphabet_runs.pt")
    from vhe.data.omniglot import OmniglotSet
    from vhe.data.textures import procedural_textures, textured_omniglot

    textured = textured_omniglot(OmniglotSet.load(res / "background.pt"), procedural_textures(3), n_per_character=3)
    textured.save(res / "textured.pt")
    paths = {
        k: below_cwd(res / f"{k}.pt")
        for k in ("background", "evaluation", "lake_runs", "within_alphabet_runs", "textured")
    }
    paths["results"] = below_cwd(root / "results")
    raw = {
        "run": "test",
        "seed": 0,
        "device": "cpu",
        "wandb": {"mode": "disabled"},
        "data": {"val_fraction": 0.25},
        "paths": paths,
        "nets": NETS,
        "train": TRAIN,
        "models": MODELS,
        "evaluation": {
            "n_samples": 3,
            "max_classes": 4,
            "classification_samples": 2,
            "lake_runs": True,
            "within_alphabet_runs": 1,
            "episodes": {"ways": [5], "shots": [1, 2], "n_episodes": 2},
            "validation_runs": {"n_runs": 2, "n_way": 2},
            "seed": 0,
        },
    }
    cfg = load_config(raw)
    configs = {}
    for name in MODELS:
        mc = model_config(cfg, name)
        p = root / "configs" / f"{name}.json"
        p.parent.mkdir(exist_ok=True)
        p.write_text(json.dumps(mc))
        configs[name] = p
    return root, configs


def checkpoint(root, configs, name, train_steps=0):
    """best.pt: from the trainer (train_steps > 0) or an untrained model in the trainer's format."""
    out = root / "checkpoints" / name
    if train_steps:
        from experiments.trainer import train

        train(str(configs[name]), out, max_steps=train_steps, wandb_mode="disabled", num_threads=1)
    else:
        cfg = load_config(str(configs[name]))
        torch.manual_seed(0)
        exp = build_experiment(cfg, "cpu")
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            {"model": exp.model.state_dict(), "step": 0, "val_bound": float("nan"), "val_kl": {}, "config": cfg},
            out / "best.pt",
        )
    assert (out / "best.pt").is_file()
    return out / "best.pt"


def run_cli(root, configs, name, *extra, train_steps=0):
    ckpt = checkpoint(root, configs, name, train_steps)
    out = root / "metrics" / f"{name}.json"
    figs = root / "figures"
    rc = ev.main(
        [
            "--config",
            str(configs[name]),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--figures",
            str(figs),
            "--n-samples",
            str(K_SAMPLES),
            "--device",
            "cpu",
            *extra,
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())  # strict JSON: no NaN
    assert set(ev.OUTPUT_KEYS) <= set(data), set(ev.OUTPUT_KEYS) - set(data)
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left nothing behind
    return data, figs


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_accuracy(entry, n_units_key):
    assert 0.0 <= entry["accuracy"] <= 1.0
    lo, hi = entry["ci95"]
    assert 0.0 <= lo <= hi <= 1.0
    lo, hi = entry["ci95_wilson"]
    assert 0.0 <= lo <= entry["accuracy"] <= hi <= 1.0
    assert entry[n_units_key] >= 1 and entry["n_trials"] >= entry[n_units_key]
    assert isinstance(entry["ci_method"], str)


def check_likelihood(data, n_classes):
    assert data["K"] == K_SAMPLES
    assert data["n_classes"] == n_classes and data["images_per_class"] == N_PER
    assert len(data["test_classes"]) == n_classes
    for key in ("nll_estimate", "elbo", "nll_stderr"):
        assert finite(data[key]), key
    assert not {"nll_per_image", "nll_n_samples", "test_bound", "train_bound"} & set(data)  # no duplicate keys
    nll, elbo = data["per_class"]["nll"], data["per_class"]["elbo"]
    assert len(nll) == len(elbo) == n_classes
    # -log p̂ = -(logsumexp - log K) <= -mean log w = -ELBO, class by class
    assert all(finite(a) and finite(b) and a <= b + 1e-6 for a, b in zip(nll, elbo))
    assert data["nll_estimate"] <= data["elbo"] + 1e-6
    # a binary 28x28 image costs at most 784 log 2 nats under a sane untrained model, and more than 0
    assert 0 < data["nll_estimate"] < 784 * math.log(2) * 2
    for side in ("test", "train"):
        b = data["bounds"][side]
        assert finite(b["value"]) and b["n_images"] == n_classes * N_PER and b["n_classes"] == n_classes


def test_class_model_every_section(setup):
    root, configs = setup
    data, figs = run_cli(root, configs, "vhe_deconv", train_steps=2)
    assert (data["model"], data["experiment"], data["objective"], data["decoder"]) == (
        "vhe_deconv",
        "class",
        "vhe",
        "deconv",
    )
    assert data["run"] == "test" and data["seed"] == 0
    assert data["checkpoint"]["step"] == 2 and data["checkpoint"]["path"].endswith("best.pt")
    prov = data["provenance"]
    assert {"git_commit", "torch", "device", "date"} <= set(prov) and prov["device"] == "cpu"
    assert data["evaluation"]["n_samples"] == K_SAMPLES  # the CLI overrides the config (3)
    assert data["graph"] == {"latents": ["c", "z"], "class_latents": ["c"], "element_latents": ["z"]}
    check_likelihood(data, n_classes=4)  # max_classes
    assert data["bounds"]["test"]["k_shot"] == {"c": 3, "z": 1} and data["bounds"]["test"]["rescale"] is True
    kl = data["kl_c"]
    assert finite(kl["mean"]) and finite(kl["std"]) and kl["mean"] >= 0 and kl["k_shot"] == 3
    assert kl["n_classes"] == 4
    # classification: every estimator on the same trials; an untrained-ish model on random runs is
    # at chance (1/20), well below 1
    cl = data["classification"]
    assert cl["estimators"] == ["marginal_ratio", "conditional", "ns_kl", "symmetric"] and cl["n_samples"] == 2
    for method in cl["estimators"]:
        lake = cl["lake_runs"][method]
        check_accuracy(lake, "n_runs")
        assert lake["n_runs"] == 2 and lake["n_trials"] == 40 and lake["n_way"] == [20] and lake["method"] == method
        assert lake["accuracy"] < 0.5 and len(lake["per_trial"]) == 40 and sum(lake["per_trial"]) == lake["correct"]
        assert len(lake["runs"]) == 2 and all(0 <= r["accuracy"] <= 1 for r in lake["runs"])
        within = cl["within_alphabet_runs"][method]
        check_accuracy(within, "n_runs")
        assert within["n_runs"] == 1 and within["ci_method"].startswith("Wilson")
        val = cl["validation_runs"][method]
        assert val["n_runs"] == 2 and val["n_way"] == [2]
    assert set(cl["episodes"]) == {"5way_1shot", "5way_2shot"}
    for by_method in cl["episodes"].values():
        assert set(by_method) == set(cl["estimators"])
        for e in by_method.values():
            check_accuracy(e, "n_episodes")
            assert e["n_episodes"] == 2 and e["n_trials"] == 10
    assert data["not_defined"] == {}
    for section in (
        "setup",
        "likelihood",
        "bounds",
        "kl_c",
        "validation_runs",
        "lake_runs",
        "within_alphabet_runs",
        "episodes",
        "samples_figure",
        "total",
    ):
        assert finite(data["eval_seconds"][section]), section
    assert (figs / "samples_vhe_deconv.png").stat().st_size > 0
    assert (figs / "samples_vhe_deconv.pdf").stat().st_size > 0
    assert data["figures"]["samples"][0].endswith("samples_vhe_deconv.png")


def test_ns_objective_and_cli_overrides(setup):
    root, configs = setup
    data, _ = run_cli(
        root,
        configs,
        "ns_deconv",
        "--max-classes",
        "2",
        "--no-lake-runs",
        "--within-alphabet-runs",
        "0",
        "--ways",
        "2",
        "--shots",
        "1",
        "--n-episodes",
        "1",
    )
    check_likelihood(data, n_classes=2)
    assert data["bounds"]["test"]["rescale"] is False and data["bounds"]["test"]["resample"]["c"] is False
    assert "lake_runs" not in data["classification"] and "within_alphabet_runs" not in data["classification"]
    assert set(data["classification"]["episodes"]) == {"2way_1shot"}


def test_pixelcnn_decoder_samples_without_probs(setup):
    root, configs = setup
    data, figs = run_cli(
        root,
        configs,
        "vhe_pixelcnn",
        "--max-classes",
        "2",
        "--no-lake-runs",
        "--within-alphabet-runs",
        "0",
        "--n-episodes",
        "1",
        "--shots",
        "1",
    )
    check_likelihood(data, n_classes=2)
    check_accuracy(data["classification"]["episodes"]["5way_1shot"]["conditional"], "n_episodes")
    assert (figs / "samples_vhe_pixelcnn.png").is_file()


def test_episodes_with_too_few_characters_are_skipped(setup):
    root, configs = setup
    data, _ = run_cli(
        root,
        configs,
        "vhe_deconv",
        "--max-classes",
        "1",
        "--no-lake-runs",
        "--within-alphabet-runs",
        "0",
        "--ways",
        "20",
        "--shots",
        "1",
        "--n-episodes",
        "1",
    )
    e = data["classification"]["episodes"]["20way_1shot"]["conditional"]
    assert e["accuracy"] is None and "characters" in e["skipped"]
    # one test class: no spread and no standard error (analysis.stats: null with a reason, not 0)
    assert data["kl_c"]["std"] is None and data["nll_stderr"] is None
    assert data["not_defined"]["nll_stderr"].startswith("n < 2")


def test_vae_has_likelihood_but_no_class_metrics(setup):
    root, configs = setup
    data, figs = run_cli(root, configs, "vae_deconv")
    check_likelihood(data, n_classes=4)
    assert data["graph"]["class_latents"] == []
    for key in ("kl_c", "classification"):
        assert data[key] is None and isinstance(data["not_defined"][key], str)
    assert "nll_estimate" not in data["not_defined"]
    assert (figs / "samples_vae_deconv.png").is_file()


def test_vae_likelihood_is_sum_of_per_image_terms(setup):
    """For the VAE, log p̂(X) of a class of N images equals sum_i log p̂(x_i) (every latent is per-image)."""
    root, configs = setup
    cfg = load_config(str(configs["vae_deconv"]))
    model = build_experiment(cfg, "cpu").model
    X = blobs(2, 3, seed=5).float().view(2, 3, 1, 28, 28)
    torch.manual_seed(0)
    nll, nelbo = ev.likelihood(model, X, K=1, elem=["z"], max_elements=10_000)
    # with K = 1 the estimate is the ELBO exactly
    assert torch.allclose(nll, nelbo)


def test_hierarchical_treats_a_and_c_as_class_level(setup):
    root, configs = setup
    data, figs = run_cli(root, configs, "hierarchical", "--no-lake-runs", "--n-episodes", "1", "--shots", "1")
    assert data["graph"]["class_latents"] == ["a", "c"] and data["graph"]["element_latents"] == ["z"]
    check_likelihood(data, n_classes=4)
    assert finite(data["kl_c"]["mean"])
    check_accuracy(data["classification"]["within_alphabet_runs"]["ns_kl"], "n_runs")
    check_accuracy(data["classification"]["episodes"]["5way_1shot"]["marginal_ratio"], "n_episodes")
    assert data["not_defined"] == {}
    assert (figs / "samples_hierarchical.png").is_file()


def test_factorial_is_not_defined_rather_than_an_error(setup):
    root, configs = setup
    data, figs = run_cli(root, configs, "factorial")
    assert data["graph"]["latents"] == ["c", "t", "z"] or set(data["graph"]["latents"]) == {"c", "t", "z"}
    for key in ("nll_estimate", "elbo", "bounds", "kl_c", "classification"):
        assert data[key] is None
        assert "not defined for this graph" in data["not_defined"][key] and "'t'" in data["not_defined"][key]
    assert (figs / "samples_factorial.png").is_file()  # unconditional samples


def test_class_structure_of_hand_built_graphs():
    import vhe
    from tests.vhe.toy_models import Px, Qc, Qz

    model = vhe.VHE(encoder=[Qc(), Qz()], decoder=Px())
    assert ev.class_structure(model) == (["c"], ["z"])

    class Qt(Qc):
        def forward(self, inputs, t=None):
            return super().forward(inputs, c=t)

    class Pxct(torch.nn.Module):
        def forward(self, c, t, x=None):
            return Px.forward(self.px, c, t, x)

        def __init__(self):
            super().__init__()
            self.px = Px()

    two = vhe.VHE(encoder=[Qc(), Qt()], decoder=Pxct())
    with pytest.raises(ev.EvaluationError, match="not defined for this graph"):
        ev.class_structure(two)


def test_intervals():
    lo, hi = ev.wilson_interval(8, 10)
    assert 0.0 < lo < 0.8 < hi < 1.0
    assert ev.wilson_interval(0, 20)[0] == 0.0 and ev.wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert ev.wilson_interval(0, 0) is None
    s = ev.accuracy_summary([{"correct": 15, "n_queries": 20}, {"correct": 17, "n_queries": 20}] * 5, "run")
    assert s["accuracy"] == pytest.approx(0.8) and s["n_runs"] == 10 and s["n_trials"] == 200
    half = 1.96 * 0.05270 / math.sqrt(10)  # sd of [0.75, 0.85] x 5 (ddof 1)
    assert s["ci95"] == pytest.approx([0.8 - half, 0.8 + half], abs=1e-3) and "normal" in s["ci_method"]
    few = ev.accuracy_summary([{"correct": 4, "n_queries": 20}] * 3, "episode")  # no spread, few units
    assert few["ci95"] == few["ci95_wilson"] and few["ci95"][0] < 0.2 < few["ci95"][1]
    s1 = ev.accuracy_summary([{"correct": 5, "n_queries": 20}], "run")
    assert s1["ci95"] == s1["ci95_wilson"] and "Wilson" in s1["ci_method"]


def test_per_decoder_settings_override_the_evaluation_section(setup):
    from experiments.sections import Evaluation

    root, configs = setup
    cfg = load_config(str(configs["vhe_deconv"]))
    cfg["evaluation"]["per_decoder"] = {"deconv": {"classification_samples": 3}, "pixelcnn": {"n_samples": 7}}
    cfg = load_config(cfg)  # the schema accepts it
    ev_ = Evaluation.of(cfg["evaluation"])
    assert ev_.for_decoder("deconv").classification_samples == 3
    assert ev_.for_decoder("deconv").n_samples == cfg["evaluation"]["n_samples"]
    assert ev_.for_decoder("pixelcnn").n_samples == 7
    cfg["evaluation"]["per_decoder"]["deconv"]["n_samplez"] = 3
    with pytest.raises(Exception, match="n_samplez"):
        load_config(cfg)
    out = root / "metrics" / "per_decoder.json"
    cfg["evaluation"]["per_decoder"]["deconv"] = {"classification_samples": 3}
    data = ev.evaluate(cfg, checkpoint(root, configs, "vhe_deconv"), out, progress=False)
    assert data["evaluation"]["classification_samples"] == 3  # recorded as used
    args = ev.parse_args(["--config", "x", "--checkpoint", "y", "--out", "z", "--classification-samples", "5"])
    over = load_config(ev.apply_overrides(cfg, args))["evaluation"]
    assert Evaluation.of(over).for_decoder("deconv").classification_samples == 5  # the command line wins


def test_evaluation_settings_resolve_per_decoder_with_experiments_config():
    cfg = load_config({"evaluation": {"n_samples": 50, "per_decoder": {"pixelcnn": {"n_samples": 5}}}})
    from experiments.config import evaluation_for

    pix = ev.evaluation_settings(cfg["evaluation"], "pixelcnn")
    assert pix.n_samples == evaluation_for(cfg, "pixelcnn")["n_samples"] == 5
    assert ev.evaluation_settings(cfg["evaluation"], "deconv").n_samples == 50
    assert pix.per_decoder == cfg["evaluation"]["per_decoder"]  # recorded as given in the metrics JSON


def test_evaluate_runs_its_sections_in_order():
    assert [s.name for s in ev.SECTIONS] == ["likelihood", "bounds", "kl_c", "classification", "samples_figure"]
    assert [s.seed_offset for s in ev.SECTIONS] == [1, 2, 3, None, None]
    keys = [k for s in ev.SECTIONS for k in s.keys]
    assert keys == ["nll_estimate", "elbo", "bounds", "kl_c", "classification"] and set(keys) <= set(ev.OUTPUT_KEYS)


def test_a_diverged_model_gets_null_metrics_with_their_reason(setup):
    """NaN weights: nothing is computed; every metric is null with the reason (strict JSON, no
    number written for a NaN), and the sample sheet says why it is empty."""
    root, configs = setup
    cfg = load_config(str(configs["vhe_deconv"]))
    torch.manual_seed(0)
    exp = build_experiment(cfg, "cpu")
    with torch.no_grad():
        for p in exp.model.parameters():
            p.fill_(float("nan"))
    ckpt = root / "checkpoints" / "diverged" / "best.pt"
    save_checkpoint({"model": exp.model.state_dict(), "step": 3, "val_bound": float("nan"), "config": cfg}, ckpt)
    out, figs = root / "metrics" / "diverged.json", root / "figures_diverged"
    ev.evaluate(cfg, ckpt, out, figures=figs, progress=False)
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} written as a number"))
    for key in ("nll_estimate", "elbo", "bounds", "kl_c", "classification"):
        assert data[key] is None and "not finite" in data["not_defined"][key] and "step 3" in data["not_defined"][key]
    assert "diverged" in data["diverged"]
    assert data["checkpoint"]["val_bound"] is None and data["non_finite"]["checkpoint.val_bound"]
    assert (figs / "samples_vhe_deconv.png").is_file()


def test_non_finite_scores_give_a_null_accuracy():
    nan = float("nan")
    assert ev._non_finite_trials(torch.tensor([[0.0, 1.0], [nan, 1.0], [0.0, float("inf")]])) == 2
    out = ev._mark_non_finite({"accuracy": 0.5, "ci95": [0.4, 0.6], "ci95_wilson": [0.4, 0.6]}, 2)
    assert math.isnan(out["accuracy"]) and out["non_finite_trials"] == 2
    assert ev._mark_non_finite({"accuracy": 0.5}, 0) == {"accuracy": 0.5}


def test_evaluation_is_logged_to_wandb_offline_and_nothing_when_disabled(setup):
    from tests.wandb_records import runs

    root, configs = setup
    wdir = root / "results" / "wandb"
    cfg = load_config(str(configs["vhe_deconv"]))
    ckpt = checkpoint(root, configs, "vhe_deconv")
    ev.evaluate(cfg, ckpt, root / "metrics" / "wb_disabled.json", progress=False)
    assert not wdir.exists()  # mode disabled (the setup's): no W&B files
    cfg["wandb"] = {"mode": "offline", "project": "test"}
    ev.evaluate(cfg, ckpt, root / "metrics" / "wb_offline.json", progress=False)
    (found,) = runs(wdir)
    data = json.loads((root / "metrics" / "wb_offline.json").read_text())
    assert found["job_type"] == "eval" and found["group"] == "test/vhe_deconv"  # its own run (training: untracked)
    assert found["summary"]["eval/nll/test"] == pytest.approx(data["nll_estimate"])
    assert (
        found["summary"]["eval/accuracy/lake_runs/conditional"]
        == data["classification"]["lake_runs"]["conditional"]["accuracy"]
    )
    assert found["media"]["eval/classification"] == "table-file"


def test_test_classes_are_drawn_from_every_alphabet():
    from vhe.data.omniglot import OmniglotSet

    # 3 alphabets of 4, 2 and 6 characters, 3 drawings each
    sizes = [4, 2, 6]
    character = torch.arange(12).repeat_interleave(3)
    alphabet = torch.tensor([a for a, n in enumerate(sizes) for _ in range(n)]).repeat_interleave(3)
    s = OmniglotSet(
        images=torch.zeros(36, 1, 28, 28, dtype=torch.uint8),
        character=character,
        alphabet=alphabet,
        drawer=torch.arange(3).repeat(12),
        character_names=[f"c{i}" for i in range(12)],
        alphabet_names=["A", "B", "C"],
    )
    assert ev.stratified_classes(s, 5) == [0, 1, 4, 5, 6]  # A0 B0 C0, then A1 B1
    assert ev.stratified_classes(s, 8) == [0, 1, 2, 4, 5, 6, 7, 8]
    assert ev.stratified_classes(s, None) == list(range(12)) == ev.stratified_classes(s, 50)
    X, idx, names = ev.test_classes(s, 3)
    assert names == ["c0", "c4", "c6"] and X.shape == (3, 3, 1, 28, 28)
    assert {int(alphabet[i[0]]) for i in idx} == {0, 1, 2}
