"""experiments builders (vae, class-structured) and the registry, on a synthetic set."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import vhe
from experiments import datasets
from experiments.common import Experiment
from experiments.config import load_config, model_config
from experiments.registry import build_experiment
from tests.experiments import tiny_config

N_PER = 6  # drawings per synthetic character
K = 3  # train.k_shot in tiny_config


def build(tmp_path, experiment="class", objective="vhe", decoder="deconv", **overrides):
    cfg = load_config(
        tiny_config(
            tmp_path, models={"m": {"experiment": experiment, "objective": objective, "decoder": decoder}}, **overrides
        )
    )
    return build_experiment(model_config(cfg, "m"), "cpu")


@pytest.mark.parametrize("decoder", ["deconv", "pixelcnn"])
@pytest.mark.parametrize("experiment", ["vae", "class"])
def test_builds_scores_and_backprops(tmp_path, experiment, decoder):
    exp = build(tmp_path, experiment=experiment, decoder=decoder)
    assert isinstance(exp, Experiment) and isinstance(exp.model, vhe.VHE)
    latents = ["z"] if experiment == "vae" else ["c", "z"]
    assert exp.model.order == latents and exp.kl_latents == latents
    expected = vhe.nets.DeconvDecoder if decoder == "deconv" else vhe.nets.PixelCNNDecoder
    assert isinstance(exp.model.decoder, expected)
    assert exp.model.decoder.vhe_parents == tuple(latents)
    b = next(iter(exp.train_loader))
    assert b.target.shape == (8, 1, 28, 28) and b.target.dtype == torch.float32
    assert set(b.target.unique().tolist()) <= {0.0, 1.0}
    bound, kl = exp.model.score(b.inputs, b.sizes, x=b.target, rescale=exp.objective.rescale, return_kl=True)
    assert bound.shape == () and torch.isfinite(bound) and set(kl) == set(latents)
    (-bound).backward()
    # (the last PixelCNN layer's vertical-stack conditioning feeds nothing, hence no grad)
    grads = [p.grad for n, p in exp.model.named_parameters() if not n.endswith(f"layers.{1}.cond_v.weight")]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    if decoder == "deconv":  # (PixelCNN sampling is slow and tested in tests/vhe/nets)
        x = exp.model.sample(
            inputs={k: b.inputs[k][:2] for k in latents if k != "z"} or None,
            batch_size=None if experiment == "class" else 2,
        )
        assert x.shape == (2, 1, 28, 28)


def test_loader_sizes_and_shapes(tmp_path):
    exp = build(tmp_path)
    b = next(iter(exp.train_loader))
    assert b.inputs["c"].shape == (8, K, 1, 28, 28) and b.inputs["z"].shape == (8, 1, 1, 28, 28)
    assert torch.equal(b.sizes["c"], torch.full((8,), float(N_PER)))
    assert torch.equal(b.sizes["z"], torch.ones(8))
    assert torch.equal(b.inputs["z"][:, 0], b.target)  # z's support set is the target itself
    assert exp.train_loader.k_shot == {"c": K, "z": 1}
    # validation: the held-out characters (val_fraction 0.25 of 12), fixed seed, no transforms
    assert exp.info["train_characters"] == 9 and exp.info["val_characters"] == 3
    assert exp.info["train_images"] == 9 * N_PER and len(exp.val_loader.data) == 3 * N_PER
    assert exp.val_loader.transforms == []
    train_imgs = {tuple(x.flatten().tolist()) for x in exp.train_loader.data}
    assert not any(tuple(x.flatten().tolist()) in train_imgs for x in exp.val_loader.data)


@pytest.mark.parametrize("objective", ["ns", "rescale"])
def test_ns_loader_puts_the_target_first(tmp_path, objective):
    exp = build(tmp_path, objective=objective)
    assert exp.train_loader.resample == {"c": False, "z": True}
    for b in exp.train_loader:
        assert torch.equal(b.inputs["c"][:, 0], b.target)
        # the rest are other members of the class, not the target again
        assert not (b.inputs["c"][:, 1:] == b.target[:, None]).flatten(2).all(-1).any()


@pytest.mark.parametrize("objective", ["vhe", "resample"])
def test_vhe_loader_draws_support_independently(tmp_path, objective):
    exp = build(tmp_path, objective=objective)
    assert exp.train_loader.resample == {"c": True, "z": True}
    first, contains, rows = 0, 0, 0
    for _ in range(10):
        for b in exp.train_loader:
            eq = (b.inputs["c"] == b.target[:, None]).flatten(2).all(-1)  # (B, K)
            first += int(eq[:, 0].sum())
            contains += int(eq.any(1).sum())
            rows += len(b.target)
    # target in D with probability K/|X| = 0.5, at position 0 with probability 1/|X|
    assert 0.35 < contains / rows < 0.65
    assert first / rows < 0.3


def test_kl_weights_follow_rescale(tmp_path):
    """rescale=True divides KL_c by |X| (class size), rescale=False by |D| (k_shot)."""
    for objective, divisor in [("vhe", N_PER), ("resample", K), ("ns", K), ("rescale", N_PER)]:
        exp = build(tmp_path, objective=objective)
        b = next(iter(exp.train_loader))
        w = exp.model._weights(b.inputs, b.sizes, 1.0, exp.objective.rescale)
        assert torch.allclose(w["c"], torch.full((8,), 1.0 / divisor)), objective
        assert torch.allclose(torch.as_tensor(w["z"]), torch.tensor(1.0))
        # and the bound moves accordingly: same noise, both weightings
        torch.manual_seed(0)
        b_vhe, kl = exp.model.score(b.inputs, b.sizes, x=b.target, rescale=True, return_kl=True, reduction="none")
        torch.manual_seed(0)
        b_ns = exp.model.score(b.inputs, b.sizes, x=b.target, rescale=False, reduction="none")
        assert torch.allclose(b_vhe - b_ns, kl["c"] * (1.0 / K - 1.0 / N_PER), atol=1e-4)


def test_dihedral_augmentation_makes_new_classes(tmp_path):
    from vhe.data.omniglot import dihedral

    exp = build(tmp_path, objective="ns", data={"augment_dihedral": True})
    (t,) = exp.train_loader.transforms
    assert t.shares("c") and t.shares("z") and len(t.args) == 8
    assert exp.info["train_characters"] == 9 * 8
    data = exp.train_loader.data.float()
    classes = exp.train_loader.groups["c"].ids
    ks_seen = set()
    b = next(iter(exp.train_loader))
    assert torch.equal(b.sizes["c"], torch.full((8,), float(N_PER)))  # |X| of a transformed class
    for i in range(len(b.target)):
        src = data[b.index[i]]
        ks = [k for k in range(8) if torch.equal(dihedral(src, k), b.target[i])]
        assert ks, "target is not a dihedral transform of its source image"
        members = data[classes == classes[b.index[i]]]
        for s in b.inputs["c"][i]:  # every support image: the same transform of a class member
            assert any(torch.equal(dihedral(m, k), s) for m in members for k in ks)
        ks_seen.update(ks)
    assert len(ks_seen) > 1


def test_max_characters_and_validation_split(tmp_path):
    cfg = load_config(tiny_config(tmp_path, data={"max_characters": 8, "val_fraction": 0.25}))
    s = datasets.load_split(cfg, "background")
    assert s.n_classes == 8 and len(s) == 8 * N_PER
    train, val = datasets.train_val_sets(cfg)
    assert train.n_classes == 6 and val.n_classes == 2
    train2, val2 = datasets.train_val_sets(cfg)
    assert torch.equal(val.images, val2.images)  # seeded split
    cfg["seed"] = 1
    _, val3 = datasets.train_val_sets(cfg)
    assert not torch.equal(val.images, val3.images) or val.character_names != val3.character_names


def test_validation_loader_is_reproducible(tmp_path):
    a = next(iter(build(tmp_path).val_loader))
    b = next(iter(build(tmp_path).val_loader))
    assert torch.equal(a.index, b.index) and torch.equal(a.inputs["c"], b.inputs["c"])


def test_registry_errors(tmp_path):
    cfg = load_config(tiny_config(tmp_path))
    with pytest.raises(KeyError, match="model"):
        build_experiment(cfg, "cpu")
    mc = model_config(cfg, "vhe_deconv")
    mc["model"]["experiment"] = "nope"
    with pytest.raises(ValueError, match="nope"):
        build_experiment(mc, "cpu")
    for name in ("hierarchical", "factorial"):
        if importlib.util.find_spec(f"experiments.{name}") is None:
            mc["model"]["experiment"] = name
            with pytest.raises(NotImplementedError, match=name):
                build_experiment(mc, "cpu")
