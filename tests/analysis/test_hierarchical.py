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
    good = alphabet_style(_BarModel(True, 4), s, "cpu", seed=0, n_shown=2, n_new=25)
    blind = alphabet_style(_BarModel(False, 4), s, "cpu", seed=0, n_shown=2, n_new=25)
    assert good["alphabets"] == 4 and good["chance"] == pytest.approx(0.25)
    assert good["classifier_accuracy_real"] == pytest.approx(1.0)
    assert good["accuracy"] == pytest.approx(1.0)
    assert blind["accuracy"] < 0.5                                    # 100 samples around chance (0.25)
    assert 0.0 <= good["nearest_is_given"] <= 1.0 and good["given_share_of_images"] == pytest.approx(2 / 8)
    too_few = alphabet_style(_BarModel(True, 4), s, "cpu", seed=0, n_shown=7, n_new=2)
    assert "skipped" in too_few
