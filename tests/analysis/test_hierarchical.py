"""analysis.hierarchical: the alphabet-style measure on a stand-in model whose style is known, and
the hierarchical-vs-class bound comparison at the last common validation step."""

from __future__ import annotations

import pytest
import torch

from analysis.hierarchical import alphabet_style, matched_step_bounds
from vhe.data import OmniglotSet


def test_matched_step_bounds(tmp_path):
    (tmp_path / "a.csv").write_text("step,val_bound\n100,-150\n200,-140\n300,-130\n")
    (tmp_path / "b.csv").write_text("step,val_bound\n100,-160\n200,\n250,-150\n")
    assert matched_step_bounds(tmp_path / "a.csv", tmp_path / "b.csv")["step"] == 100
    m = matched_step_bounds(tmp_path / "a.csv", tmp_path / "b.csv")
    assert (m["model"], m["class_model"]) == (-150.0, -160.0)
    assert matched_step_bounds(tmp_path / "a.csv", tmp_path / "missing.csv") is None


class _BarModel:
    """A stand-in hierarchical model for ``alphabet_style``: alphabet k's characters are horizontal
    bars in rows 4k..4k+2 (column offset per character); a ~ q(a | D_a) is the mean row of the given
    ink, and x = the decoder mean is a bar in that row (``follow_a``) or in a random alphabet's rows."""

    observed = "x"
    order = ["a"]

    def __init__(self, follow_a: bool, n_alphabets: int):
        self.follow_a, self.n_alphabets = follow_a, n_alphabets
        self.decoder = self

    def parents(self, var):
        return ["a"]

    def sample(self, inputs=None, values=None, batch_size=1, return_latents=True):
        if values and "a" in values:
            a = values["a"]
        elif not inputs:  # a ~ p(a): a random alphabet
            a = torch.randint(self.n_alphabets, (batch_size, 1)).float()
            return None, {"a": a}
        else:
            D = inputs["a"][0, :, 0]  # (N, H, W)
            rows = torch.arange(D.shape[-2], dtype=torch.float32)[:, None]
            a = ((D * rows).sum() / D.sum()).reshape(1, 1) // 4  # the given bars' alphabet
        return None, {"a": a.expand(batch_size, 1)}

    def probs(self, a):
        k = a[:, 0].long() if self.follow_a else torch.randint(self.n_alphabets, (len(a),))
        x = torch.zeros(len(a), 1, 28, 28)
        for i, kk in enumerate(k.tolist()):
            x[i, 0, 4 * kk : 4 * kk + 3, 6:22] = 1.0
        return x


def _bar_set(n_alphabets=4, n_chars=8, n_per=3):
    images, character, alphabet = [], [], []
    for a in range(n_alphabets):
        for c in range(n_chars):
            for _ in range(n_per):
                im = torch.zeros(1, 28, 28, dtype=torch.uint8)
                im[0, 4 * a : 4 * a + 3, 2 + c : 14 + c] = 1
                images.append(im)
                character.append(a * n_chars + c)
                alphabet.append(a)
    C = n_alphabets * n_chars
    return OmniglotSet(
        images=torch.stack(images),
        character=torch.tensor(character),
        alphabet=torch.tensor(alphabet),
        drawer=torch.arange(len(images)) % n_per,
        character_names=[f"c{i}" for i in range(C)],
        alphabet_names=[f"A{i}" for i in range(n_alphabets)],
    )


def test_alphabet_style_tells_style_from_its_absence():
    s = _bar_set()
    torch.manual_seed(0)
    good = alphabet_style(_BarModel(True, 4), s, "cpu", seed=0, n_shown=2, n_new=25)
    blind = alphabet_style(_BarModel(False, 4), s, "cpu", seed=0, n_shown=2, n_new=25)
    assert good["alphabets"] == 4 and good["chance"] == pytest.approx(0.25)
    assert good["classifier_accuracy_real"] == pytest.approx(1.0)
    assert good["accuracy"] == pytest.approx(1.0)
    assert blind["accuracy"] < 0.5  # 100 samples around chance (0.25)
    assert 0.0 <= good["nearest_is_given"] <= 1.0 and good["given_share_of_images"] == pytest.approx(2 / 8)
    too_few = alphabet_style(_BarModel(True, 4), s, "cpu", seed=0, n_shown=7, n_new=2)
    assert "skipped" in too_few


class _ClassModel(_BarModel):
    """A stand-in class-structured model: no alphabet latent, every sample a random alphabet's bar."""

    order = ["c"]

    def __init__(self, n_alphabets: int):
        super().__init__(False, n_alphabets)

    def sample(self, inputs=None, values=None, batch_size=1, return_latents=True):
        assert not inputs and not values
        return None, {"a": torch.zeros(batch_size, 1)}


def test_alphabet_style_bootstrap_interval_and_controls_at_chance():
    """Several a per alphabet, a bootstrap interval over alphabets; the controls that cannot know the
    alphabet (this model with a ~ p(a), and the class model) sit at chance, inside their intervals."""
    s = _bar_set(n_alphabets=5)
    torch.manual_seed(0)
    good = alphabet_style(
        _BarModel(True, 5), s, "cpu", seed=0, n_shown=2, n_new=20, n_alphabet_samples=3, control_model=_ClassModel(5)
    )
    assert good["alphabet_samples"] == 3 and good["new_per_alphabet"] == 60
    assert good["accuracy"] == pytest.approx(1.0) and good["accuracy_ci95"] == pytest.approx([1.0, 1.0])
    assert set(good["per_alphabet"]) == {f"A{i}" for i in range(5)}
    for name in ("prior_a", "class_model"):
        c = good["controls"][name]
        lo, hi = c["accuracy_ci95"]
        assert lo <= c["accuracy"] <= hi and c["chance_in_ci95"] is True, (name, c)
        assert abs(c["accuracy"] - 0.2) < 0.1  # 300 samples at chance 1/5
    blind = alphabet_style(_BarModel(False, 5), s, "cpu", seed=0, n_shown=2, n_new=20, n_alphabet_samples=3)
    assert blind["accuracy_ci95"][0] < 0.2 + 0.15 and blind["accuracy"] < 0.4
    assert blind["controls"]["class_model"] is None and "class_model_reason" in blind["controls"]


class _VectorSet:
    """The attributes of an OmniglotSet that analysis.hierarchical.context_likelihood reads, over
    linear-Gaussian "images" (vectors): A alphabets of 2 characters with n images each."""

    def __init__(self, images, n_alphabets, n):
        self.images = images.reshape(-1, images.shape[-1])
        self.character = torch.arange(2 * n_alphabets).repeat_interleave(n)
        self.alphabet = self.character // 2
        self.n_alphabets, self.n_classes = n_alphabets, 2 * n_alphabets
        self.character_names = [f"c{i}" for i in range(self.n_classes)]
        self.alphabet_names = [f"A{i}" for i in range(n_alphabets)]

    def character_alphabet(self):
        return torch.arange(self.n_classes) // 2


def test_context_likelihood_reports_exact_nats_per_image_with_exact_posteriors():
    """Every character's context is the images of the other character of its alphabet (never its
    own): with the exact q(a | C) the reported -log p(X | C)/|X| converges to the exact value (K = 3000:
    the bound of tests/vhe/test_evaluate_context.py), and the paired gain is no-context minus context."""
    from tests.vhe.linear_gaussian import LinearGaussian

    from analysis.hierarchical import context_likelihood

    n, A = 3, 4
    m = LinearGaussian(dc=2, dz=2, dx=3, s=0.6, hierarchical=True, da=2, tau=0.5, seed=0)
    al = m.sample_alphabets(A, 2, n, seed=7)  # (A, 2, n, dx)
    s = _VectorSet(al, A, n)
    chars = torch.arange(2 * A)
    X = al.reshape(2 * A, n, -1)
    other = al.flip(1).reshape(2 * A, n, -1)  # the other character of the alphabet
    exact_ctx = -m.log_given_context(X, [other]) / n
    no_ctx = (-m.log_marginal(X) / n).numpy()
    out = context_likelihood(m.vhe(context_group=n), s, chars, X, no_ctx, n_samples=3000, n_context=10, seed=0)
    assert out["characters"] == 2 * A and out["context_images"] == n
    got = torch.tensor([r["nll_context"] for r in out["per_character"]], dtype=torch.float64)
    assert (got - exact_ctx).abs().mean() < 0.04 / n
    gain = no_ctx - got.numpy()
    assert out["context_gain"] == pytest.approx(gain.mean())
    assert out["context_gain_ci95"][0] < out["context_gain"] < out["context_gain_ci95"][1]
    assert out["context_helps_share"] == pytest.approx((gain > 0).mean())
    assert "context_gain_vs_class" not in out
