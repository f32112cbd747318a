"""VHE graph construction, the bound, sampling, errors and state_dict round trips."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

import vhe
from vhe import VHE, GraphError, declare
from vhe.priors import NormalPrior

from .toy_models import LinearPx, Px, Qc, Qz, ScaledQc, exact_log_marginal, exact_posterior_qc, sample_classes


class GaussianLeaf(nn.Module):
    """A Gaussian factor with explicitly declared variable/parents (any number of parents)."""

    def __init__(self, variable, parents=(), dim=2, encoder=True):
        super().__init__()
        declare(self, variable, parents)
        self.encoder = encoder
        self.latent_shape = (dim,)
        self.linear = nn.Linear(dim * (len(parents) + int(encoder)), dim) if (parents or encoder) else None
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, *args, **value):
        v = value.pop(self.vhe_variable)
        feats = []
        if self.encoder:
            feats.append(args[0].mean(dim=1))
            args = args[1:]
        feats += list(args)
        mu = self.linear(torch.cat(feats, dim=1)) if feats else self.bias.expand(1, -1)
        dist = Normal(mu, 1.0)
        if v is None:
            v = dist.rsample()
        return v, dist.log_prob(v).sum(dim=1)


def test_order_and_default_priors():
    model = VHE(encoder=[Qz(), Qc()], decoder=Px())
    assert model.order == ["c", "z"]
    assert isinstance(model.prior["c"], NormalPrior) and isinstance(model.prior["z"], NormalPrior)
    assert model.descendants("c") == {"z"}
    assert model.parents("z") == ("c",) and model.parents("x") == ("c", "z")
    assert model.parents("z", role="prior") == ()


def test_dict_encoders_and_partial_prior():
    custom = GaussianLeaf("z", parents=("c",), encoder=False)
    model = VHE(encoder={"c": Qc(), "z": Qz()}, decoder=Px(), prior={"z": custom})
    assert model.prior["z"] is custom and isinstance(model.prior["c"], NormalPrior)
    x = model.sample(batch_size=4)
    assert x.shape == (4, 2)


def test_signature_with_annotations_defaults_and_keyword_only():
    class Qk(nn.Module):
        latent_shape = (2,)

        def forward(self, inputs: torch.Tensor, c: torch.Tensor, *, k: torch.Tensor | None = None):
            dist = Normal(inputs.mean(1) + c, 1.0)
            k = dist.rsample() if k is None else k
            return k, dist.log_prob(k).sum(1)

    class Pxk(nn.Module):
        def forward(self, k, *, c, x=None):
            dist = Normal(k + c, 1.0)
            x = dist.sample() if x is None else x
            return x, dist.log_prob(x).sum(1)

    model = VHE(encoder=[Qc(), Qk()], decoder=Pxk())
    assert model.order == ["c", "k"]
    inputs = {"c": torch.randn(3, 4, 2), "k": torch.randn(3, 1, 2)}
    out = model.score(inputs, {"c": 10, "k": 1}, x=torch.randn(3, 2))
    assert out.shape == () and torch.isfinite(out)


def test_encoder_receives_only_declared_parents():
    seen = {}

    class Spy(GaussianLeaf):
        def forward(self, *args, **value):
            seen[self.vhe_variable] = (len(args), sorted(value))
            return super().forward(*args, **value)

    a = Spy("a")
    c = Spy("c", parents=("a",))
    z = Spy("z", parents=("c",))
    dec = GaussianLeaf("x", parents=("c", "z"), encoder=False)
    model = VHE(encoder=[a, c, z], decoder=dec)
    inputs = {k: torch.randn(2, 3, 2) for k in "acz"}
    model.score(inputs, {"a": 30, "c": 10, "z": 1}, x=torch.randn(2, 2))
    assert seen == {"a": (1, ["a"]), "c": (2, ["c"]), "z": (2, ["z"])}


def test_hierarchical_and_factorial_graphs_build_score_sample():
    # hierarchical a -> c -> z -> x with p(c | a)
    model = VHE(
        encoder=[GaussianLeaf("a"), GaussianLeaf("c", ("a",)), GaussianLeaf("z", ("c",))],
        decoder=GaussianLeaf("x", ("c", "z"), encoder=False),
        prior={"c": GaussianLeaf("c", ("a",), encoder=False)},
    )
    assert model.order == ["a", "c", "z"]
    inputs = {"a": torch.randn(4, 6, 2), "c": torch.randn(4, 3, 2), "z": torch.randn(4, 1, 2)}
    b, kl = model.score(inputs, {"a": 100, "c": 20, "z": 1}, x=torch.randn(4, 2), return_kl=True)
    assert set(kl) == {"a", "c", "z"} and torch.isfinite(b)
    assert model.sample(batch_size=5).shape == (5, 2)
    assert model.sample(inputs={"a": inputs["a"]}).shape == (4, 2)
    # factorial c, t -> x
    model = VHE(encoder=[GaussianLeaf("c"), GaussianLeaf("t")], decoder=GaussianLeaf("x", ("c", "t"), encoder=False))
    inputs = {"c": torch.randn(4, 3, 2), "t": torch.randn(4, 3, 2)}
    assert torch.isfinite(model.score(inputs, {"c": 20, "t": 50}, x=torch.randn(4, 2)))
    assert model.sample(inputs={"c": inputs["c"]}).shape == (4, 2)


def test_errors_cycle_missing_parent_and_bad_sizes():
    with pytest.raises(GraphError, match="cycle: (a -> b -> a|b -> a -> b)"):
        VHE(
            encoder=[GaussianLeaf("a", ("b",)), GaussianLeaf("b", ("a",))],
            decoder=GaussianLeaf("x", ("a",), encoder=False),
        )
    with pytest.raises(GraphError, match="parent 'q'"):
        VHE(encoder=[GaussianLeaf("c", ("q",))], decoder=GaussianLeaf("x", ("c",), encoder=False))
    with pytest.raises(GraphError, match="decoder .* parent 'w'"):
        VHE(encoder=[Qc()], decoder=GaussianLeaf("x", ("w",), encoder=False))
    with pytest.raises(GraphError, match="two encoders"):
        VHE(encoder=[Qc(), Qc()], decoder=LinearPx())
    with pytest.raises(GraphError, match="prior given for 'k'"):
        VHE(encoder=[Qc()], decoder=LinearPx(), prior={"k": GaussianLeaf("k", (), encoder=False)})
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    inputs = {"c": torch.randn(2, 5, 2), "z": torch.randn(2, 1, 2)}
    with pytest.raises(KeyError, match="sizes has no entry for latent 'z'"):
        model.score(inputs, {"c": 10}, x=torch.randn(2, 2))
    with pytest.raises(KeyError, match="not latents"):
        model.score(inputs, {"c": 10, "z": 1, "y": 3}, x=torch.randn(2, 2))
    with pytest.raises(KeyError, match="no support set"):
        model.score({"c": inputs["c"]}, {"c": 10, "z": 1}, x=torch.randn(2, 2))
    with pytest.raises(ValueError, match="needs the targets"):
        model.score(inputs, {"c": 10, "z": 1})


def test_kl_weights_rescale_and_kl_factor():
    """score = log p(x) - sum_k f_k KL_k / size_k; check against a manual computation."""
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    inputs = {"c": torch.randn(3, 5, 2), "z": torch.randn(3, 1, 2)}
    x = torch.randn(3, 2)

    def run(**kw):
        torch.manual_seed(0)
        return model.score(inputs, {"c": torch.full((3,), 20.0), "z": 1}, x=x, reduction="none", return_kl=True, **kw)

    b1, kl = run()
    b0, _ = run(kl_factor=0.0)  # log p(x | c, z) alone
    assert torch.allclose(b1, b0 - kl["c"] / 20 - kl["z"], atol=1e-5)
    b_ns, _ = run(rescale=False)
    assert torch.allclose(b_ns, b0 - kl["c"] / 5 - kl["z"], atol=1e-5)
    b_d, _ = run(kl_factor={"c": 0.5})
    assert torch.allclose(b_d, b0 - 0.5 * kl["c"] / 20 - kl["z"], atol=1e-5)


def test_bound_is_below_exact_class_likelihood():
    """Averaged over elements and support sets, the VHE bound is <= log p(X) / |X| (exact model)."""
    torch.manual_seed(0)
    n = 6
    X = sample_classes(200, n)
    exact = exact_log_marginal(X) / n  # nats per element
    for qc in (ScaledQc(a=0.1, log_s=0.0), exact_posterior_qc(4)):
        model = VHE(encoder=[qc], decoder=LinearPx())
        B = X.shape[0]
        bounds = []
        for _ in range(20):
            t = torch.randint(n, (B,))
            d = torch.stack([torch.randperm(n)[:4] for _ in range(B)])
            D = X[torch.arange(B)[:, None], d]
            with torch.no_grad():
                bounds.append(model.score({"c": D}, {"c": n}, x=X[torch.arange(B), t], reduction="none"))
        gap = exact - torch.stack(bounds).mean(0)
        assert gap.mean() > 0, gap.mean()
        # the standard error of the mean gap is small enough for this to be a real check
        assert gap.mean() > 3 * gap.std() / math.sqrt(len(gap)) or gap.mean() > 0.05


def test_sampling_before_scoring_to_device_and_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    assert model.sample(batch_size=3).shape == (3, 2)  # priors know their shapes up front
    model = model.to(torch.float64).to(torch.float32)
    assert model.prior["c"].loc.dtype == torch.float32
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    other = VHE(encoder=[Qc(), Qz()], decoder=Px())
    other.load_state_dict(torch.load(path, weights_only=True))
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_lazy_prior_shape_is_learned_and_survives_state_dict():
    class Qnoshape(Qc):
        def __init__(self):
            super().__init__()
            del self.latent_shape

    model = VHE(encoder=[Qnoshape()], decoder=LinearPx())
    with pytest.raises(RuntimeError, match="does not know the latent's shape"):
        model.sample(batch_size=2)
    model.score({"c": torch.randn(2, 3, 2)}, {"c": 5}, x=torch.randn(2, 2))
    assert model.sample(batch_size=2).shape == (2, 2)
    fresh = VHE(encoder=[Qnoshape()], decoder=LinearPx())
    fresh.load_state_dict(model.state_dict())
    assert fresh.sample(batch_size=2).shape == (2, 2)
    assert VHE(encoder=[Qnoshape()], decoder=LinearPx(), latent_shape={"c": (2,)}).sample(batch_size=1).shape == (1, 2)


def test_sample_is_no_grad_in_eval_mode_and_restores_training():
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    modes = []
    model.decoder.register_forward_hook(lambda m, i, o: modes.append(m.training))
    x = model.sample(inputs={"c": torch.randn(2, 5, 2)})
    assert not x.requires_grad and modes == [False] and model.training


def test_determinism_under_seed():
    def run():
        torch.manual_seed(123)
        model = VHE(encoder=[Qc(), Qz()], decoder=Px())
        loader = vhe.DataLoader(
            torch.randn(40, 2, generator=torch.Generator().manual_seed(1)),
            labels={"c": torch.arange(40) // 8, "z": range(40)},
            k_shot={"c": 3, "z": 1},
            batch_size=8,
            seed=7,
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for batch in loader:
            opt.zero_grad()
            (-model.score(batch.inputs, batch.sizes, x=batch.target)).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


def test_reinforce_credit_assignment_for_discrete_latent():
    """A discrete latent's gradient must not depend on the KL of an unrelated latent."""

    class Categorical2(nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(torch.tensor([0.3, -0.2]))
            self.latent_shape = (2,)

        def forward(self, inputs, d=None):
            dist = torch.distributions.OneHotCategorical(logits=self.logits.expand(inputs.shape[0], 2))
            d = dist.sample() if d is None else d
            return d, dist.log_prob(d)

    class Uniform2(nn.Module):
        def forward(self, d=None, batch_size=1):
            dist = torch.distributions.OneHotCategorical(
                probs=torch.full((batch_size if d is None else d.shape[0], 2), 0.5)
            )
            d = dist.sample() if d is None else d
            return d, dist.log_prob(d)

    class FixedKL(nn.Module):  # q(b | D) whose KL to N(0, 1) is controlled by `shift`
        def __init__(self, shift):
            super().__init__()
            self.shift = shift
            self.latent_shape = (2,)
            self.p = nn.Parameter(torch.zeros(()))

        def forward(self, inputs, b=None):
            dist = Normal(torch.full((inputs.shape[0], 2), self.shift) + 0 * self.p, 1.0)
            b = dist.rsample() if b is None else b
            return b, dist.log_prob(b).sum(1)

    class Pxd(nn.Module):
        def forward(self, d, b, x=None):
            dist = Normal(d[:, :1] * 2.0, 1.0)
            x = dist.sample() if x is None else x
            return x, dist.log_prob(x).sum(1)

    grads = []
    for shift in (0.0, 50.0):
        torch.manual_seed(0)
        model = VHE(encoder=[Categorical2(), FixedKL(shift)], decoder=Pxd(), prior={"d": Uniform2()})
        inputs = {"d": torch.zeros(256, 1, 1), "b": torch.zeros(256, 1, 1)}
        out = model.score(inputs, {"d": 1, "b": 1}, x=torch.full((256, 1), 2.0))
        out.backward()
        grads.append(model.encoder["d"].logits.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-4)
    # and the gradient pushes towards the component that explains x = 2 (index 0)
    assert grads[0][0] > grads[0][1]


def test_several_targets_per_support_set_leave_the_objective_unchanged_in_expectation():
    """On the linear-Gaussian model: the mean bound with T = 4 targets per support set (one c
    sample per group) equals the mean with one target per support set, for VHE and NS."""
    from vhe import DataLoader
    from .toy_models import Px, Qc, Qz

    torch.manual_seed(0)
    n_classes, per_class = 40, 8
    centres = 2 * torch.randn(n_classes, 1, 2)
    data = (centres + 0.5 * torch.randn(n_classes, per_class, 2)).reshape(-1, 2)
    labels = {"c": torch.arange(len(data)) // per_class, "z": range(len(data))}
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    for resample, rescale in ((True, True), (False, False)):
        means = {}
        for T in (1, 4):
            loader = DataLoader(
                data,
                labels=labels,
                k_shot={"c": 4, "z": 1},
                batch_size=800,
                seed=1,
                targets_per_class=T,
                resample={"c": resample, "z": True},
            )
            with torch.no_grad():
                vals = torch.cat(
                    [
                        model.score(b.inputs, b.sizes, x=b.target, rescale=rescale, reduction="none")
                        for b in (loader.sample() for _ in range(40))
                    ]
                )
            means[T] = (vals.mean().item(), vals.std().item() / len(vals) ** 0.5)
        (m1, s1), (m4, s4) = means[1], means[4]
        assert abs(m1 - m4) < 4 * (s1**2 + s4**2) ** 0.5 + 0.02, (resample, means)


def test_group_shared_inputs_are_broadcast_and_mismatches_are_errors():
    from .toy_models import Px, Qc, Qz

    model = VHE(encoder=[Qc(), Qz()], decoder=Px())
    x = torch.randn(8, 2)
    inputs = {"c": torch.randn(2, 3, 2), "z": x[:, None]}
    bound = model.score(inputs, {"c": torch.tensor([5.0, 5.0]), "z": 1}, x=x, reduction="none")
    assert bound.shape == (8,)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        model.score({"c": torch.randn(3, 3, 2), "z": x[:, None]}, {"c": 5, "z": 1}, x=x)
