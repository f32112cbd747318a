"""analysis.structured_common: the features of the texture and shape classifiers the structured
measures use."""

from __future__ import annotations

import torch

from analysis.structured_common import fit_logistic, shape_features, texture_features
from vhe.data import procedural_textures

N_TEX = 4


def test_classifier_features():
    # texture features are invariant to circular shifts; shape features ignore a fine texture
    tex = procedural_textures(N_TEX)
    x = tex[:, None].float()
    f = texture_features(x)
    f_shift = texture_features(torch.roll(x, shifts=(3, 5), dims=(-2, -1)))
    torch.testing.assert_close(f, f_shift, rtol=1e-4, atol=1e-4)
    predict = fit_logistic(torch.cat([f, f_shift]), torch.arange(N_TEX).repeat(2), N_TEX)
    assert torch.equal(predict(f), torch.arange(N_TEX))
    blob = torch.zeros(1, 1, 28, 28)
    blob[..., 6:22, 8:20] = 1
    a = shape_features(blob * x[0:1])
    b = shape_features(blob * x[1:2])
    other = torch.zeros_like(blob)
    other[..., 2:10, 2:26] = 1
    c = shape_features(other * x[0:1])
    assert float(a @ b.T) > float(a @ c.T)


def test_bootstrap_interval():
    from analysis.structured_common import bootstrap_interval

    assert bootstrap_interval([0.3]) is None  # fewer than 2 units: undefined
    assert bootstrap_interval([0.5, 0.5, 0.5]) == [0.5, 0.5]
    v = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    lo, hi = bootstrap_interval(v, seed=0)
    assert lo < 0.5 < hi and hi - lo < 0.8
    assert bootstrap_interval(v, seed=0) == [lo, hi]  # seeded
