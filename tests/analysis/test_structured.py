"""analysis.structured end to end on a tiny synthetic setup: the hierarchical and factorial CLIs
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
from tests.experiments import make_set, tiny_config
from vhe.data import OmniglotSet, procedural_textures, textured_omniglot

MODELS = {"hierarchical": {"experiment": "hierarchical", "objective": "vhe", "decoder": "deconv"},
          "factorial": {"experiment": "factorial", "objective": "vhe", "decoder": "deconv"},
          "vhe_deconv": {"experiment": "class", "objective": "vhe", "decoder": "deconv"}}
N_TEX = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured")
    res = root / "resources"
    bg = make_set(res / "background.pt", n_chars=12, n_per=6, n_alphabets=3, seed=0)
    make_set(res / "evaluation.pt", n_chars=12, n_per=6, n_alphabets=3, seed=1)
    textured_omniglot(OmniglotSet.load(bg), procedural_textures(N_TEX), 4, seed=0).save(res / "textured.pt")
    cfg = load_config(tiny_config(root, models=MODELS, paths={"evaluation": str(res / "evaluation.pt"),
                                                               "textured": str(res / "textured.pt")},
                                  evaluation={"n_samples": 2, "max_classes": 4, "seed": 0}))
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
        else:                    # an untrained model in the trainer's best.pt format
            torch.manual_seed(0)
            exp = build_experiment(mcfg, "cpu")
            save_checkpoint({"model": exp.model.state_dict(), "step": 0, "config": mcfg}, ckpts[name])
    return root, configs, ckpts


def run_cli(root, configs, ckpts, name, *extra):
    out = root / "metrics" / f"{name}_structured.json"
    figs = root / "figures"
    rc = st.main(["--config", str(configs[name]), "--checkpoint", str(ckpts[name]), "--out", str(out),
                  "--figures", str(figs), "--device", "cpu", "--quiet", *extra])
    return rc, out, figs


def assert_figure(path: Path):
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 50
    assert path.with_suffix(".pdf").is_file() and path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"


def test_hierarchical_cli(setup):
    root, configs, ckpts = setup
    rc, out, figs = run_cli(root, configs, ckpts, "hierarchical", "--class-checkpoint", str(ckpts["vhe_deconv"]),
                            "--class-config", str(configs["vhe_deconv"]), "--n-alphabets", "2", "--nll-classes", "3",
                            "--n-shown", "1", "--style-new", "3")
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
    assert cm["same_training_steps"] is True                     # both untrained checkpoints: step 0
    assert cm["val_bound_at_matched_step"] is None               # untrained: no history to compare
    assert m["alphabet_improves_bound"] == (m["bound_per_image"] > cm["bound_per_image"])
    assert m["bound_difference"] == pytest.approx(m["bound_per_image"] - cm["bound_per_image"], abs=1e-6)
    assert m["nll"]["n_samples"] == 2 and m["nll"]["characters"] == 3
    assert m["nll"]["nll_per_image"] > 0 and m["nll"]["class_nll_per_image"] > 0
    assert m["nll"]["nll_improvement"] == pytest.approx(m["nll"]["class_nll_per_image"] - m["nll"]["nll_per_image"])
    assert len(m["figure_facts"]) == 2 and m["figure_facts"][0]["D_a_images"] > 0
    sty = m["alphabet_style"]
    assert sty["alphabets"] == 3 and sty["new_per_alphabet"] == 3 and sty["chance"] == pytest.approx(1 / 3)
    assert 0.0 <= sty["accuracy"] <= 1.0 and 0.0 <= sty["classifier_accuracy_real"] <= 1.0
    p = m["provenance"]
    assert {"git_commit", "torch", "date", "seed"} <= set(p) and p["seed"] == 0


def test_hierarchical_cli_without_class_model_is_deterministic(setup):
    root, configs, ckpts = setup
    rc, out, _ = run_cli(root, configs, ckpts, "hierarchical", "--n-samples", "0", "--n-alphabets", "1")
    assert rc == 0
    m1 = json.loads(out.read_text())
    assert m1["class_model"] is None and m1["alphabet_improves_bound"] is None and "nll" not in m1
    run_cli(root, configs, ckpts, "hierarchical", "--n-samples", "0", "--n-alphabets", "1")
    m2 = json.loads(out.read_text())
    assert m1["bound_per_image"] == m2["bound_per_image"]


def test_factorial_cli(setup):
    root, configs, ckpts = setup
    rc, out, figs = run_cli(root, configs, ckpts, "factorial", "--grid-rows", "3", "--grid-cols", "4",
                            "--swap-pairs", "2", "--metric-rows", "3")
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


def test_matched_step_bounds(tmp_path):
    from analysis.structured import matched_step_bounds

    (tmp_path / "a.csv").write_text("step,val_bound\n100,-150\n200,-140\n300,-130\n")
    (tmp_path / "b.csv").write_text("step,val_bound\n100,-160\n200,\n250,-150\n")
    assert matched_step_bounds(tmp_path / "a.csv", tmp_path / "b.csv")["step"] == 100
    m = matched_step_bounds(tmp_path / "a.csv", tmp_path / "b.csv")
    assert (m["model"], m["class_model"]) == (-150.0, -160.0)
    assert matched_step_bounds(tmp_path / "a.csv", tmp_path / "missing.csv") is None


def test_classifier_features():
    # texture features are invariant to circular shifts; shape features ignore a fine texture
    tex = procedural_textures(N_TEX)
    x = tex[:, None].float()
    f = st.texture_features(x)
    f_shift = st.texture_features(torch.roll(x, shifts=(3, 5), dims=(-2, -1)))
    torch.testing.assert_close(f, f_shift, rtol=1e-4, atol=1e-4)
    predict = st.fit_logistic(torch.cat([f, f_shift]), torch.arange(N_TEX).repeat(2), N_TEX)
    assert torch.equal(predict(f), torch.arange(N_TEX))
    blob = torch.zeros(1, 1, 28, 28)
    blob[..., 6:22, 8:20] = 1
    a = st.shape_features(blob * x[0:1])
    b = st.shape_features(blob * x[1:2])
    other = torch.zeros_like(blob)
    other[..., 2:10, 2:26] = 1
    c = st.shape_features(other * x[0:1])
    assert float(a @ b.T) > float(a @ c.T)


def test_rejects_class_models(setup):
    root, configs, ckpts = setup
    rc, _, _ = run_cli(root, configs, ckpts, "vhe_deconv")
    assert rc == 2


class _BarModel:
    """A stand-in hierarchical model for ``alphabet_style``: alphabet k's characters are horizontal
    bars in rows 4k..4k+2 (column offset per character); a ~ q(a | D_a) is the mean row of the given
    ink, and x = the decoder mean is a bar in that row (``follow_a``) or in a random alphabet's rows."""

    observed = "x"

    def __init__(self, follow_a: bool, n_alphabets: int):
        self.follow_a, self.n_alphabets = follow_a, n_alphabets
        self.decoder = self

    def parents(self, var):
        return ["a"]

    def sample(self, inputs=None, values=None, batch_size=1, return_latents=True):
        if values and "a" in values:
            a = values["a"]
        else:
            D = inputs["a"][0, :, 0]                                   # (N, H, W)
            rows = torch.arange(D.shape[-2], dtype=torch.float32)[:, None]
            a = ((D * rows).sum() / D.sum()).reshape(1, 1) // 4          # the given bars' alphabet
        return None, {"a": a.expand(batch_size, 1)}

    def probs(self, a):
        k = a[:, 0].long() if self.follow_a else torch.randint(self.n_alphabets, (len(a),))
        x = torch.zeros(len(a), 1, 28, 28)
        for i, kk in enumerate(k.tolist()):
            x[i, 0, 4 * kk:4 * kk + 3, 6:22] = 1.0
        return x


def _bar_set(n_alphabets=4, n_chars=8, n_per=3):
    images, character, alphabet = [], [], []
    for a in range(n_alphabets):
        for c in range(n_chars):
            for _ in range(n_per):
                im = torch.zeros(1, 28, 28, dtype=torch.uint8)
                im[0, 4 * a:4 * a + 3, 2 + c:14 + c] = 1
                images.append(im)
                character.append(a * n_chars + c)
                alphabet.append(a)
    C = n_alphabets * n_chars
    return OmniglotSet(images=torch.stack(images), character=torch.tensor(character), alphabet=torch.tensor(alphabet),
                       drawer=torch.arange(len(images)) % n_per, character_names=[f"c{i}" for i in range(C)],
                       alphabet_names=[f"A{i}" for i in range(n_alphabets)])


def test_alphabet_style_tells_style_from_its_absence():
    s = _bar_set()
    torch.manual_seed(0)
    good = st.alphabet_style(_BarModel(True, 4), s, "cpu", seed=0, n_shown=2, n_new=25)
    blind = st.alphabet_style(_BarModel(False, 4), s, "cpu", seed=0, n_shown=2, n_new=25)
    assert good["alphabets"] == 4 and good["chance"] == pytest.approx(0.25)
    assert good["classifier_accuracy_real"] == pytest.approx(1.0)
    assert good["accuracy"] == pytest.approx(1.0)
    assert blind["accuracy"] < 0.5                                    # 100 samples around chance (0.25)
    assert 0.0 <= good["nearest_is_given"] <= 1.0 and good["given_share_of_images"] == pytest.approx(2 / 8)
    too_few = st.alphabet_style(_BarModel(True, 4), s, "cpu", seed=0, n_shown=7, n_new=2)
    assert "skipped" in too_few
