"""The evaluation CLIs with the spatial network family (nets.family: spatial, vhe.nets.spatial): a class
map latent c (C x 28 x 28) goes through analysis.evaluate (every section) and analysis.structured
(hierarchical: c ~ p(c | a) from a PixelCNN prior conditioned on a) unchanged. Tiny networks, two
training steps."""

from __future__ import annotations

import json

import pytest
import torch

from analysis import evaluate as ev
from analysis import structured as st
from experiments.config import load_config, model_config
from experiments.trainer import train
from tests.analysis.test_evaluate_cli import NETS, TRAIN, random_runs, save_set
from tests.experiments import below_cwd
from vhe.data.runs import save_runs

SPATIAL = {
    "family": "spatial",
    "spatial": {
        "c_channels": 2,
        "z_dim": 3,
        "stn_channels": 2,
        "enc_channels": 2,
        "warp_hidden": 4,
        "prior": "pixelcnn",
        "prior_layers": 1,
        "prior_channels": 4,
    },
}
MODELS = {
    "vhe_spatial": {"experiment": "class", "objective": "vhe", "decoder": "deconv", "nets": SPATIAL},
    "hierarchical_spatial": {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv", "nets": SPATIAL},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: one thread avoids OpenMP contention on a shared machine (the trainer uses one too)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, _one_thread):
    root = tmp_path_factory.mktemp("spatial")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # config paths are relative to the working directory
        res = root / "resources"
        res.mkdir()
        save_set(res / "background.pt", 8, 2, seed=0)
        save_set(res / "evaluation.pt", 6, 2, seed=1)
        save_runs(random_runs(1, 5, seed=2), res / "lake_runs.pt")
        save_runs(random_runs(1, 5, seed=3), res / "within_alphabet_runs.pt")
        paths = {
            k: below_cwd(res / f"{k}.pt") for k in ("background", "evaluation", "lake_runs", "within_alphabet_runs")
        }
        paths["results"] = below_cwd(root / "results")
        cfg = load_config(
            {
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
                    "n_samples": 2,
                    "max_classes": 2,
                    "classification_samples": 1,
                    "lake_runs": True,
                    "within_alphabet_runs": 1,
                    "episodes": {"ways": [3], "shots": [1], "n_episodes": 1},
                    "validation_runs": {"n_runs": 1, "n_way": 2},
                    "seed": 0,
                },
            }
        )
        configs, ckpts = {}, {}
        for name in MODELS:
            configs[name] = root / "configs" / f"{name}.json"
            configs[name].parent.mkdir(exist_ok=True)
            configs[name].write_text(json.dumps(model_config(cfg, name)))
            train(str(configs[name]), root / "checkpoints" / name, max_steps=2, wandb_mode="disabled", num_threads=1)
            ckpts[name] = root / "checkpoints" / name / "best.pt"
        yield root, configs, ckpts


def test_class_model_with_a_spatial_c_evaluates(setup):
    root, configs, ckpts = setup
    out = root / "metrics" / "vhe_spatial.json"
    rc = ev.main(
        [
            "--config",
            str(configs["vhe_spatial"]),
            "--checkpoint",
            str(ckpts["vhe_spatial"]),
            "--out",
            str(out),
            "--figures",
            str(root / "figures"),
            "--n-samples",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["graph"] == {"latents": ["c", "z"], "class_latents": ["c"], "element_latents": ["z"]}
    assert data["nll_estimate"] <= data["elbo"] + 1e-6 and data["kl_c"]["mean"] > 0
    for method, entry in data["classification"]["lake_runs"].items():
        assert 0.0 <= entry["accuracy"] <= 1.0, method
    assert (root / "figures" / "samples_vhe_spatial.png").is_file()


def test_hierarchical_model_with_a_spatial_c_evaluates(setup):
    root, configs, ckpts = setup
    out = root / "metrics" / "hierarchical_spatial.json"
    rc = st.main(
        [
            "--config",
            str(configs["hierarchical_spatial"]),
            "--checkpoint",
            str(ckpts["hierarchical_spatial"]),
            "--out",
            str(out),
            "--figures",
            str(root / "figures"),
            "--device",
            "cpu",
            "--quiet",
            "--class-checkpoint",
            str(ckpts["vhe_spatial"]),
            "--class-config",
            str(configs["vhe_spatial"]),
            "--n-alphabets",
            "2",
            "--nll-classes",
            "2",
            "--n-shown",
            "1",
            "--n-new",
            "2",
            "--n-draws",
            "2",
            "--style-new",
            "2",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert isinstance(data["bound_per_image"], float) and data["kl"]["c"] > 0
    assert data["class_model"] and data["nll"] and data["alphabet_style"]
    assert (root / "figures" / "hierarchical_spatial_samples.png").is_file()
