"""Every model of the paper profile (config/config.yaml) at its real network sizes: built on synthetic
data at Omniglot's shapes, two training steps of the real Trainer on the CPU (with its validation
and checkpoints) at a tiny batch, and a one-class evaluation (vhe.evaluate.log_marginal, K = 2, one
class of 3 images; KL of the class latents). So nobody discovers a crash after hours on a GPU.

Only what the test cannot afford is overridden: the batch (2 targets, T = 1), the number of steps
and validation batches, the data (12 synthetic characters, a quarter held out for validation;
procedural textures) and the run settings
(CPU, one thread, fp32, W&B off). The networks, objectives, k_shot and augmentation are the paper's.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import vhe
from experiments import datasets
from experiments.config import load_config, model_config, read_config_file
from experiments.factorial import train_val_textured
from experiments.registry import build_experiment
from experiments.sections import Nets
from experiments.trainer import Trainer
from tests.experiments import below_cwd, make_set
from vhe.data import OmniglotSet, procedural_textures, textured_omniglot
from vhe.evaluate import kl_class, log_marginal

PAPER = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
N_CHARS, N_PER, N_ALPHA = 12, 6, 3
TEST_TRAIN = {
    "batch_size": 2,
    "targets_per_class": 1,
    "max_steps": 2,
    "val_every": 2,
    "val_batches": 1,
    "checkpoint_every": 2,
    "log_every": 1,
    "sample_every": 0,
    "num_threads": 1,
    "amp_cpu": False,
    "patience": None,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: one thread avoids OpenMP contention on a shared machine (the trainer uses one too)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def paper_models() -> list[str]:
    return list(read_config_file(PAPER)["models"])


@pytest.fixture
def data_dir(in_tmp_path):
    """Synthetic background and textured sets (28x28, binary) in the test's folder."""
    bg = make_set(in_tmp_path / "resources" / "background.pt", N_CHARS, N_PER, N_ALPHA)
    textured_omniglot(OmniglotSet.load(bg), procedural_textures(4), 4, seed=0).save(
        in_tmp_path / "resources" / "textured.pt"
    )
    return in_tmp_path


def paper_config(data_dir) -> dict:
    """config/config.yaml with the test's overrides (see the module docstring), data in data_dir."""
    raw = copy.deepcopy(read_config_file(PAPER))
    raw.update(device="cpu", wandb={"mode": "disabled"}, run="paper")
    raw["textures"] = {"source": "procedural", "n_textures": 4, "n_per_character": 4}
    raw["data"]["val_fraction"] = 0.25
    raw["paths"] = {
        "background": below_cwd(data_dir / "resources" / "background.pt"),
        "textured": below_cwd(data_dir / "resources" / "textured.pt"),
        "results": "results",
    }
    raw["train"].update(TEST_TRAIN)
    for entry in raw["models"].values():  # a model's own train overrides must not undo the test's
        entry["train"] = {**(entry.get("train") or {}), **TEST_TRAIN}
    return load_config(raw)


def test_paper_profile_models_and_families():
    """The paper profile's models, and the spatial family where the paper used it."""
    cfg = load_config(PAPER)
    fam = {name: model_config(cfg, name)["model"]["nets"]["family"] for name in cfg["models"]}
    assert fam["hierarchical_pixelcnn"] == "spatial"
    entry = cfg["models"]["hierarchical_pixelcnn"]
    assert entry["experiment"] == "hierarchical" and entry["decoder"] == "pixelcnn"
    for name, entry in cfg["models"].items():
        spatial = entry["experiment"] in ("class", "hierarchical") and entry["decoder"] == "pixelcnn"
        assert fam[name] == ("spatial" if spatial else "vector"), name


@pytest.mark.parametrize("name", paper_models())
def test_paper_model_trains_two_steps_and_evaluates(name, data_dir):
    cfg = model_config(paper_config(data_dir), name)
    m = cfg["model"]
    trainer = Trainer(cfg, data_dir / "results" / "checkpoints" / name)
    nets = Nets.of(m["nets"])
    model = trainer.model
    if nets.family == "spatial":
        assert isinstance(model.encoder["c"], vhe.nets.SpatialSetEncoder)
        assert model.encoder["c"].latent_shape == (nets.spatial["c_channels"], 28, 28)
        prior = {"gaussian": vhe.nets.SpatialGaussianPrior, "pixelcnn": vhe.nets.SpatialPixelCNNPrior}
        assert isinstance(model.prior["c"], prior[nets.spatial["prior"]])
        assert isinstance(
            model.decoder,
            vhe.nets.SpatialPixelCNNDecoder if m["decoder"] == "pixelcnn" else vhe.nets.SpatialConvDecoder,
        )
        if m["experiment"] == "hierarchical":
            assert model.prior["c"].vhe_parents == ("a",) and model.encoder["c"].vhe_parents == ("a",)
    else:
        expected = vhe.nets.PixelCNNDecoder if m["decoder"] == "pixelcnn" else vhe.nets.DeconvDecoder
        assert type(model.decoder) is expected
    if m["decoder"] == "pixelcnn":  # the real sizes, not the test's
        assert model.decoder.n_layers == nets.pixelcnn["n_layers"]
        assert model.decoder.channels == nets.pixelcnn["channels"]

    summary = trainer.fit()
    assert trainer.step == 2
    assert (trainer.out / "best.pt").is_file() and (trainer.out / "last.pt").is_file()
    val = trainer.state.last_val
    assert val is not None and torch.isfinite(torch.tensor(val["bound"])), summary
    assert all(p.isfinite().all() for p in model.parameters())

    # one class of 3 images: log p(X) with K = 2, and KL(q(c | D) || p(c)) for the class latents
    vs = (train_val_textured(cfg) if m["experiment"] == "factorial" else datasets.train_val_sets(cfg))[1]
    X = vs.images[vs.character == vs.character[0]][:3].to(torch.float32).unsqueeze(0)  # (1, 3, 1, 28, 28)
    assert X.shape == (1, 3, 1, 28, 28)
    lm, elbo = log_marginal(model, X, n_samples=2, per_element=("z",), return_elbo=True)
    assert lm.shape == (1,) and torch.isfinite(lm).all() and (lm >= elbo - 1e-3).all()
    for latent in [k for k in model.latents if k != "z"]:
        kl = kl_class(model, X, latent=latent, n_samples=2)
        assert kl.shape == (1,) and torch.isfinite(kl).all()


def test_spatial_models_sample(data_dir):
    """Sampling (the trainer's sample grids, the figures) with every spatial architecture of the paper
    profile: c from q(c | D) and from its prior (PixelCNN prior: ancestral), one image each."""
    cfg = paper_config(data_dir)
    seen = set()
    for name, entry in cfg["models"].items():
        mc = model_config(cfg, name)
        key = (entry["experiment"], entry["decoder"], mc["model"]["nets"]["family"])
        if key[2] != "spatial" or key in seen:
            continue
        seen.add(key)
        exp = build_experiment(mc, "cpu")
        b = next(iter(exp.train_loader))
        inputs = {k: b.inputs[k][:1] for k in exp.model.latents if k != "z"}
        x = exp.model.sample(inputs=inputs)
        assert x.shape == (1, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}
        if entry["experiment"] == "hierarchical":  # new characters: c ~ p(c | a)
            _, a = exp.model.sample(inputs={"a": inputs["a"]}, return_latents=True)
            assert a["c"].shape == (1, *exp.model.encoder["c"].latent_shape)
    assert seen
