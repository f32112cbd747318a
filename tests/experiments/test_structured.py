"""The hierarchical (a -> c -> z, p(c | a)) and factorial (c, t -> x) builders: graphs, loader
labels, support sets, sizes and KL weights, on tiny synthetic sets with known labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vhe
from experiments import datasets
from experiments.common import Experiment
from experiments.config import load_config, model_config
from experiments.factorial import load_textured, split_textured, train_val_textured
from experiments.registry import build_experiment
from tests.experiments import below_cwd, make_set, tiny_config
from vhe.data import OmniglotSet, procedural_textures, textured_omniglot
from vhe.nets import GaussianConditionalPrior
from vhe.priors import NormalPrior

N_CHARS, N_PER, N_ALPHA = 12, 6, 3  # background: 12 characters x 6 drawings, 3 alphabets of 4 characters
K = 3  # train.k_shot in tiny_config
N_TEX, M_PER = 4, 4  # textured: 4 textures, 4 images per character


def write_textured(tmp_path) -> Path:
    bg = Path(tmp_path) / "resources" / "background.pt"
    if not bg.exists():
        make_set(bg, N_CHARS, N_PER, N_ALPHA)
    path = Path(tmp_path) / "resources" / "textured.pt"
    if not path.exists():
        s = OmniglotSet.load(bg)
        textured_omniglot(s, procedural_textures(N_TEX), M_PER, seed=0).save(path)
    return path


def build(tmp_path, experiment, objective="vhe", decoder="deconv", **overrides):
    tex = write_textured(tmp_path)
    cfg = load_config(
        tiny_config(
            tmp_path,
            models={"m": {"experiment": experiment, "objective": objective, "decoder": decoder}},
            paths={"textured": below_cwd(tex)},
            **overrides,
        )
    )
    cfg = model_config(cfg, "m")
    return build_experiment(cfg, "cpu"), cfg


def indexed(loader):
    """Replace the loader's images by their indices (pixel values), so support sets reveal their members."""
    n = len(loader.data)
    loader.data = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 28, 28).clone()
    return loader


def members(t: torch.Tensor) -> torch.Tensor:
    """Indices of the elements of an indexed support set (..., 1, 28, 28) -> (...)."""
    return t[..., 0, 0, 0].long()


def check_supports(loader, labels: dict, n_batches: int = 3, resample: dict | None = None):
    """Every support set of latent k shares the target's label k; sizes are the label's group sizes."""
    indexed(loader)
    counts = {k: torch.bincount(v) for k, v in labels.items()}
    seen = 0
    for b in loader:
        t = b.index
        for k, lab in labels.items():
            idx = members(b.inputs[k])
            assert idx.shape == (len(t), loader.k_shot[k])
            assert torch.equal(lab[idx], lab[t][:, None].expand_as(idx)), f"support of {k} leaves the target's group"
            assert torch.equal(b.sizes[k], counts[k][lab[t]].float()), f"sizes[{k}] is not |X_{k}|"
            # the support elements of one episode are distinct
            assert all(len(set(r.tolist())) == len(r) for r in idx)
            if resample is not None and not resample[k]:
                assert torch.equal(idx[:, 0], t)
        assert torch.equal(members(b.inputs["z"])[:, 0], t)  # z's support set is the target itself
        seen += 1
        if seen == n_batches:
            break
    assert seen > 0


def kl_weights_follow(model, b, rescale: bool):
    """bound(kl_factor=1) - bound(kl_factor=0) == -sum_k KL_k / size_k, same random draws."""
    torch.manual_seed(0)
    b1, kl = model.score(b.inputs, b.sizes, x=b.target, rescale=rescale, return_kl=True, reduction="none")
    torch.manual_seed(0)
    b0 = model.score(b.inputs, b.sizes, x=b.target, rescale=rescale, kl_factor=0.0, reduction="none")
    div = {k: (b.sizes[k] if rescale else torch.full_like(b.sizes[k], b.inputs[k].shape[1])) for k in kl}
    expected = -sum(kl[k] / div[k] for k in kl)
    torch.testing.assert_close(b1 - b0, expected, rtol=1e-4, atol=1e-3)
    # one latent at a time: only its own KL, divided by its own size
    for k in kl:
        torch.manual_seed(0)
        bk = model.score(
            b.inputs, b.sizes, x=b.target, rescale=rescale, kl_factor={j: float(j == k) for j in kl}, reduction="none"
        )
        torch.testing.assert_close(bk - b0, -kl[k] / div[k], rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------ hierarchical
def test_hierarchical_graph(tmp_path):
    exp, _ = build(tmp_path, "hierarchical")
    assert isinstance(exp, Experiment)
    m = exp.model
    assert m.order == ["a", "c", "z"] and exp.kl_latents == ["a", "c", "z"] and exp.sample_latents == ["a"]
    assert m.parents_of == {"a": frozenset(), "c": frozenset({"a"}), "z": frozenset({"c"})}
    assert isinstance(m.prior["c"], GaussianConditionalPrior) and m.prior["c"].vhe_parents == ("a",)
    assert isinstance(m.prior["a"], NormalPrior) and isinstance(m.prior["z"], NormalPrior)
    assert m.encoder["a"].vhe_parents == () and m.encoder["c"].vhe_parents == ("a",)
    assert m.encoder["z"].vhe_parents == ("c",)
    assert m.decoder.vhe_parents == ("c", "z") and isinstance(m.decoder, vhe.nets.DeconvDecoder)


@pytest.mark.parametrize("objective", ["vhe", "ns"])
def test_hierarchical_support_sets_and_sizes(tmp_path, objective):
    exp, cfg = build(tmp_path, "hierarchical", objective=objective)
    train_set, val_set = datasets.train_val_sets(cfg)
    obj = vhe.get_objective(objective)
    resample = {"a": obj.resample, "c": obj.resample, "z": True}
    assert exp.train_loader.resample == resample
    # a: 10 images from the whole alphabet, capped by the smallest alphabet; c: train k_shot; z: 1
    n_alpha_train = int(torch.bincount(train_set.alphabet).min())
    assert exp.train_loader.k_shot == {"a": min(10, n_alpha_train), "c": K, "z": 1}
    assert exp.val_loader.k_shot["a"] <= exp.train_loader.k_shot["a"]
    assert exp.info["k_shot"]["train"] == exp.train_loader.k_shot
    for loader, s in ((exp.train_loader, train_set), (exp.val_loader, val_set)):
        labels = {"a": s.alphabet, "c": s.character, "z": torch.arange(len(s))}
        check_supports(loader, labels, resample=resample)
    # the alphabet's support set spans several of its characters (across characters, not one)
    indexed(exp.train_loader)
    b = next(iter(exp.train_loader))
    spans = [len(set(train_set.character[r].tolist())) for r in members(b.inputs["a"])]
    assert max(spans) > 1
    # |X_a| = images of the alphabet (e.g. 4 characters x 6), |X_c| = 6, |X_z| = 1
    assert set(b.sizes["c"].tolist()) == {float(N_PER)} and set(b.sizes["z"].tolist()) == {1.0}
    assert all(v % N_PER == 0 and v > N_PER for v in b.sizes["a"].tolist())


@pytest.mark.parametrize("rescale", [True, False])
def test_hierarchical_kl_weights_score_and_sample(tmp_path, rescale):
    exp, _ = build(tmp_path, "hierarchical")
    b = next(iter(exp.train_loader))
    kl_weights_follow(exp.model, b, rescale)
    bound = exp.model.score(b.inputs, b.sizes, x=b.target)
    (-bound).backward()
    grads = [p.grad for p in exp.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert exp.model.prior["c"].mlp[0].weight.grad.abs().sum() > 0  # p(c | a) is learned
    x, v = exp.model.sample(inputs={"a": b.inputs["a"][:3]}, return_latents=True)
    assert x.shape == (3, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert set(v) == {"a", "c", "z"}
    assert exp.model.sample(batch_size=2).shape == (2, 1, 28, 28)


def test_hierarchical_dihedral_makes_new_alphabets(tmp_path):
    exp, cfg = build(tmp_path, "hierarchical", data={"val_fraction": 0.25, "augment_dihedral": True})
    (t,) = exp.train_loader.transforms
    assert all(t.shares(k) for k in ("a", "c", "z")) and len(t.args) == 8
    train_set, _ = datasets.train_val_sets(cfg)
    b = next(iter(exp.train_loader))
    # every support set gets the target's map, so the class sizes stay those of the untransformed groups
    assert torch.equal(b.sizes["a"], torch.bincount(train_set.alphabet)[train_set.alphabet[b.index]].float())
    assert exp.info["train_alphabets"] == 8 * int(train_set.alphabet.unique().numel())


def test_hierarchical_pixelcnn_scores(tmp_path):
    exp, _ = build(tmp_path, "hierarchical", decoder="pixelcnn")
    assert isinstance(exp.model.decoder, vhe.nets.PixelCNNDecoder) and exp.model.decoder.vhe_parents == ("c", "z")
    b = next(iter(exp.train_loader))
    assert torch.isfinite(exp.model.score(b.inputs, b.sizes, x=b.target))


# ------------------------------------------------------------------ factorial
def test_factorial_graph(tmp_path):
    exp, _ = build(tmp_path, "factorial")
    m = exp.model
    assert m.order == ["c", "t", "z"] and exp.kl_latents == ["c", "t", "z"] and exp.sample_latents == ["c", "t"]
    assert m.parents_of == {"c": frozenset(), "t": frozenset(), "z": frozenset({"c", "t"})}
    assert m.decoder.vhe_parents == ("c", "t", "z")  # content and style are both parents of x
    assert m.encoder["c"].vhe_parents == () and m.encoder["t"].vhe_parents == ()
    assert all(isinstance(m.prior[k], NormalPrior) for k in ("c", "t", "z"))


def test_factorial_pixelcnn_style_conditions_every_layer(tmp_path):
    """nets.pixelcnn.global_parents: [t] gives t its own path into every gated layer; a latent that
    is not a parent of the decoder is a clear error."""
    pix = {"n_layers": 2, "channels": 8, "kernel_size": 3, "cond_channels": 4}
    exp, cfg = build(tmp_path, "factorial", decoder="pixelcnn", nets={"pixelcnn": {**pix, "global_parents": ["t"]}})
    dec = exp.model.decoder
    t_dim = cfg["model"]["nets"]["t_dim"]
    assert dec.global_parents == ("t",) and dec.cond_channels == 4 + t_dim
    b = next(iter(exp.train_loader))
    assert torch.isfinite(exp.model.score(b.inputs, b.sizes, x=b.target))
    plain, _ = build(tmp_path, "factorial", decoder="pixelcnn", nets={"pixelcnn": pix})
    assert plain.model.decoder.global_parents == () and plain.model.decoder.cond_channels == 4
    with pytest.raises(ValueError, match="not parents"):
        build(tmp_path, "class", decoder="pixelcnn", nets={"pixelcnn": {**pix, "global_parents": ["t"]}})


def test_factorial_split_keeps_texture_ids(tmp_path):
    _, cfg = build(tmp_path, "factorial")
    train, val = train_val_textured(cfg)
    assert len(train) + len(val) == N_CHARS * M_PER and val.n_classes == 3
    assert not set(train.source_index.tolist()) & set(val.source_index.tolist())
    assert set(train.texture.tolist()) <= set(range(N_TEX)) and torch.equal(train.textures, val.textures)
    again = split_textured(load_textured(cfg), 0.25, seed=0)  # deterministic for a seed
    assert torch.equal(again[1].images, val.images)


@pytest.mark.parametrize("objective", ["vhe", "ns"])
def test_factorial_support_sets_and_sizes(tmp_path, objective):
    exp, cfg = build(tmp_path, "factorial", objective=objective)
    train_set, val_set = train_val_textured(cfg)
    obj = vhe.get_objective(objective)
    resample = {"c": obj.resample, "t": obj.resample, "z": True}
    assert exp.train_loader.resample == resample
    # c: at most (images per character) - 1 = 3, so D_c can leave the target out; t: train k_shot
    assert exp.train_loader.k_shot == {"c": min(K, M_PER - 1), "t": K, "z": 1}
    for loader, s in ((exp.train_loader, train_set), (exp.val_loader, val_set)):
        labels = {"c": s.character, "t": s.texture, "z": torch.arange(len(s))}
        check_supports(loader, labels, resample=resample)
    indexed(exp.train_loader)
    b = next(iter(exp.train_loader))
    # c's support: the same character rendered in other textures; t's: other characters in the same texture
    c_tex = [len(set(train_set.texture[r].tolist())) for r in members(b.inputs["c"])]
    t_chr = [len(set(train_set.character[r].tolist())) for r in members(b.inputs["t"])]
    assert min(c_tex) == exp.train_loader.k_shot["c"] and max(t_chr) > 1
    assert set(b.sizes["c"].tolist()) == {float(M_PER)}
    assert torch.equal(b.sizes["t"], torch.bincount(train_set.texture)[train_set.texture[b.index]].float())


@pytest.mark.parametrize("rescale", [True, False])
def test_factorial_kl_weights_score_and_sample(tmp_path, rescale):
    exp, _ = build(tmp_path, "factorial")
    b = next(iter(exp.train_loader))
    kl_weights_follow(exp.model, b, rescale)
    (-exp.model.score(b.inputs, b.sizes, x=b.target)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in exp.model.parameters())
    # content from one image, style from another
    x = exp.model.sample(inputs={"c": b.inputs["c"][:2, :1], "t": b.inputs["t"][:2, :1]})
    assert x.shape == (2, 1, 28, 28)
    assert exp.model.sample(batch_size=2).shape == (2, 1, 28, 28)


def test_registry_dispatches_to_structured_builders(tmp_path):
    from experiments.registry import BUILDERS

    assert BUILDERS["hierarchical"] == "experiments.hierarchical" and BUILDERS["factorial"] == "experiments.factorial"
    for name in ("hierarchical", "factorial"):
        exp, _ = build(tmp_path, name)
        assert isinstance(exp, Experiment)
