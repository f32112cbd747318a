"""nets.family: spatial in the builders (experiments.common.spatial_nets): which modules, sizes from the
config, the hierarchical p(c | a), and the experiments that refuse it. Tiny networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import experiments
import vhe
from experiments.common import MEMORY_FORMATS
from experiments.config import ConfigError, load_config, model_config
from experiments.registry import build_experiment, build_model
from tests.experiments import below_cwd, tiny_config
from tests.experiments.test_structured import write_textured


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many tiny ops (PixelCNN sampling): one thread avoids OpenMP contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SPATIAL = {
    "c_channels": 3,
    "z_dim": 4,
    "stn_channels": 2,
    "enc_channels": 2,
    "warp_hidden": 4,
    "prior_layers": 1,
    "prior_channels": 4,
}


def build(tmp_path, experiment="class", decoder="deconv", prior="gaussian", family="spatial", **overrides):
    tex = write_textured(tmp_path)
    nets = {"family": family, "spatial": {**SPATIAL, "prior": prior}}
    cfg = load_config(
        tiny_config(
            tmp_path,
            models={"m": {"experiment": experiment, "objective": "vhe", "decoder": decoder, "nets": nets}},
            paths={"textured": below_cwd(tex)},
            **overrides,
        )
    )
    return build_experiment(model_config(cfg, "m"), "cpu")


@pytest.mark.parametrize("decoder,prior", [("deconv", "gaussian"), ("pixelcnn", "pixelcnn")])
def test_class_model_builds_the_spatial_family(tmp_path, decoder, prior):
    exp = build(tmp_path, decoder=decoder, prior=prior)
    model = exp.model
    assert model.order == ["c", "z"]
    assert isinstance(model.encoder["c"], vhe.nets.SpatialSetEncoder) and model.encoder["c"].latent_shape == (3, 28, 28)
    assert isinstance(model.encoder["z"], vhe.nets.SpatialImageEncoder) and model.encoder["z"].latent_dim == 4
    assert isinstance(
        model.prior["c"], {"gaussian": vhe.nets.SpatialGaussianPrior, "pixelcnn": vhe.nets.SpatialPixelCNNPrior}[prior]
    )
    assert isinstance(
        model.decoder, {"deconv": vhe.nets.SpatialConvDecoder, "pixelcnn": vhe.nets.SpatialPixelCNNDecoder}[decoder]
    )
    b = next(iter(exp.train_loader))
    bound, kl = model.score(b.inputs, b.sizes, x=b.target, rescale=exp.objective.rescale, return_kl=True)
    assert torch.isfinite(bound) and set(kl) == {"c", "z"}
    (-bound).backward()
    assert model.encoder["c"].stn.fc[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("prior", ["gaussian", "pixelcnn"])
def test_hierarchical_model_has_a_spatial_c_given_a(tmp_path, prior):
    exp = build(tmp_path, experiment="hierarchical", prior=prior)
    model = exp.model
    assert model.order == ["a", "c", "z"]
    assert model.prior["c"].vhe_parents == ("a",) and model.encoder["c"].vhe_parents == ("a",)
    assert isinstance(model.encoder["a"], vhe.nets.GaussianSetEncoder)  # a stays a vector
    b = next(iter(exp.train_loader))
    bound = model.score(b.inputs, b.sizes, x=b.target, rescale=True)
    assert torch.isfinite(bound)
    _, values = model.sample(inputs={"a": b.inputs["a"][:2]}, return_latents=True)  # c ~ p(c | a)
    assert values["c"].shape == (2, 3, 28, 28)


@pytest.mark.parametrize("experiment", ["vae", "factorial"])
def test_other_experiments_refuse_the_spatial_family(tmp_path, experiment):
    with pytest.raises(ValueError, match="class and hierarchical"):
        build(tmp_path, experiment=experiment)


def test_family_and_prior_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="family"):
        load_config(tiny_config(tmp_path, nets={"family": "raster"}))
    with pytest.raises(ConfigError, match="prior"):
        load_config(tiny_config(tmp_path, nets={"spatial": {"prior": "flow"}}))
    cfg = load_config(tiny_config(tmp_path))
    assert model_config(cfg, "vhe_deconv")["model"]["nets"]["family"] == "vector"  # the default


@pytest.mark.parametrize(
    "experiment,decoder,prior",
    [("class", "deconv", "gaussian"), ("class", "pixelcnn", "pixelcnn"), ("hierarchical", "deconv", "gaussian")],
)
def test_channels_last_lays_out_the_weights_and_keeps_the_numbers(tmp_path, experiment, decoder, prior):
    """memory_format: channels_last (experiments.common.apply_memory_format): every 4-D weight NHWC, and
    the same bound and gradients as the contiguous model with the same weights, up to float rounding."""
    plain = build(tmp_path, experiment, decoder, prior)
    nhwc = build(tmp_path, experiment, decoder, prior, memory_format="channels_last")
    four_d = [p for p in nhwc.model.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    assert all(p.is_contiguous() for p in plain.model.parameters())
    nhwc.model.load_state_dict(plain.model.state_dict())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)  # loading keeps the layout
    b = next(iter(plain.train_loader))
    grads = []
    for exp in (plain, nhwc):
        torch.manual_seed(0)
        bound = exp.model.score(b.inputs, b.sizes, x=b.target, rescale=exp.objective.rescale)
        (-bound).backward()
        grads.append((bound.detach(), [p.grad for p in exp.model.parameters()]))
    (b0, g0), (b1, g1) = grads
    assert torch.allclose(b0, b1, rtol=1e-4, atol=1e-3)
    for a, c in zip(g0, g1):
        assert (a is None) == (c is None)
        if a is not None:
            assert torch.allclose(a, c, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("experiment", ["class", "hierarchical"])
def test_build_model_gives_the_experiments_model_alone_in_its_layout(tmp_path, experiment):
    """experiments.registry.build_model (what the structured evaluators load checkpoints into): the
    model build_experiment builds, the same modules and parameter shapes, laid out as memory_format says."""
    write_textured(tmp_path)
    nets = {"family": "spatial", "spatial": SPATIAL}
    cfg = model_config(
        load_config(
            tiny_config(
                tmp_path,
                models={"m": {"experiment": experiment, "objective": "vhe", "decoder": "deconv", "nets": nets}},
                memory_format="channels_last",
            )
        ),
        "m",
    )
    full = build_experiment(cfg, "cpu").model
    alone = build_model(cfg, "cpu")
    assert type(alone) is type(full) and alone.order == full.order
    shapes = {k: v.shape for k, v in alone.state_dict().items()}
    assert shapes == {k: v.shape for k, v in full.state_dict().items()}
    four_d = [p for p in alone.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)


def test_memory_format_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="memory_format"):
        load_config(tiny_config(tmp_path, memory_format="nhwc"))
    assert load_config(tiny_config(tmp_path))["memory_format"] == "contiguous"  # the default
    schema = json.loads((Path(experiments.__file__).parent / "schema.json").read_text())
    assert schema["properties"]["memory_format"]["enum"] == list(MEMORY_FORMATS)  # one list of layouts
