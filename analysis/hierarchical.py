"""The hierarchical model's evaluation: bounds and -log p on held-out alphabets against the
class-structured model, new characters c ~ p(c | a) (figure) and their alphabet style
(``python -m analysis.structured`` runs it; see its docstring for the metrics).

What the alphabet is for (DESIGN.md, "What each structured experiment must show"):

* ``context_nll`` (:func:`context_likelihood`): -log p(X | C)/|X| of a new character X given a
  context C of images of the *other* characters of its alphabet (a ~ q(a | C), not q(a | X):
  vhe.evaluate.log_marginal_given_context), against -log p(X)/|X| without context (``nll``: a
  inferred from X itself) and the class model's, per image, paired over characters (mean and
  95% interval of the per-character differences).
* ``oneshot_context`` (:func:`oneshot_context`): within-alphabet one-shot classification of new
  characters with alphabet context (a ~ q(a | other characters), vhe.evaluate.class_scores_given_context)
  and without (a ~ p(a) by the same estimator; a ~ q(a | D_j), the conditional estimator; the
  class model).
* ``alphabet_style`` (:func:`alphabet_style`): several a per alphabet, a bootstrap interval over
  alphabets, and controls that ignore the alphabet (the class model, a ~ p(a)) that should sit at
  chance.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from experiments.artifacts import save_figure

import numpy as np
import torch

from .timing import PhaseTimer
from .stats import mcnemar, normal_interval, too_few_units, wilson_interval
from .structured_common import (
    ancestral,
    bootstrap_interval,
    episode_bounds,
    figure_prefix,
    fit_logistic,
    shape_features,
    _centres,
    _mean_se,
    _nearest,
    _short,
    _tile,
    se_reasons,
)

log = logging.getLogger(__name__)


# ============================================================================ hierarchical
def _pick_targets(s, max_classes, seed):
    """Indices of the images of ``max_classes`` random characters of s (all images when None)."""
    if max_classes is None or max_classes >= s.n_classes:
        return torch.arange(len(s)), s.n_classes
    g = torch.Generator().manual_seed(int(seed))
    chars = torch.randperm(s.n_classes, generator=g)[: int(max_classes)]
    return torch.isin(s.character, chars).nonzero().flatten(), int(max_classes)


def _class_tensors(s, chars: torch.Tensor, device) -> torch.Tensor:
    """(C, N, 1, H, W) float images of the given characters (N = the smallest class size)."""
    per = [torch.nonzero(s.character == c).flatten() for c in chars.tolist()]
    n = min(len(p) for p in per)
    return torch.stack([s.images[p[:n]] for p in per]).to(device=device, dtype=torch.float32)


def _nll(model, X, n_samples, chunk=8):
    from vhe.evaluate import log_marginal

    out = []
    for i in range(0, len(X), chunk):
        out.append(log_marginal(model, X[i : i + chunk], n_samples=n_samples, per_element=("z",)).double().cpu())
    return -torch.cat(out).numpy() / X.shape[1]  # (C,) nats per image


def _nll_given_context(model, X, C, n_samples, chunk=8):
    """-log p̂(X | C)/|X| per character (C,) nats per image: a ~ q(a | C) (the context sets C (n, M, ...)),
    c and z importance-sampled (vhe.evaluate.log_marginal_given_context)."""
    from vhe.evaluate import log_marginal_given_context

    out = []
    for i in range(0, len(X), chunk):
        out.append(
            log_marginal_given_context(
                model,
                X[i : i + chunk],
                C[i : i + chunk],
                n_samples=n_samples,
                context_latents=("a",),
                per_element=("z",),
            )
            .double()
            .cpu()
        )
    return -torch.cat(out).numpy() / X.shape[1]


def _has_latent(model, name: str) -> bool:
    return name in getattr(model, "order", ())


def _other_characters(s, c: int) -> torch.Tensor:
    """Indices of the images of the characters of c's alphabet other than c."""
    char_alpha = s.character_alphabet()
    others = ((char_alpha == char_alpha[c]) & (torch.arange(len(char_alpha)) != c)).nonzero().flatten()
    return torch.isin(s.character, others).nonzero().flatten()


def _paired(diff, what: str) -> dict:
    """Mean, SE and 95% interval (mean ± 1.96 SE, analysis.stats) of per-unit differences."""
    mean, se = _mean_se(diff)
    ci = normal_interval(mean, se)
    out = {what: mean, f"{what}_se": se, f"{what}_ci95": ci}
    if ci is None and mean is not None:
        out[f"{what}_ci95_reason"] = too_few_units(len(np.atleast_1d(diff)), "character")
    return out


def context_likelihood(
    model,
    s,
    chars: torch.Tensor,
    X: torch.Tensor,
    no_context,
    n_samples: int,
    n_context: int,
    seed: int,
    class_nll=None,
    chunk: int = 8,
) -> dict:
    """-log p(X | C)/|X| of whole characters given a context of their alphabet, paired against the
    same characters without context.

    For every character of ``chars`` (images X (n, N, ...)) whose alphabet has another character:
    C = ``n_context`` images drawn at random from the other characters of its alphabet (all of
    them when fewer; the same number M for every character: the smallest available), and
    -log p̂(X | C)/|X| with a ~ q(a | C) (vhe.evaluate.log_marginal_given_context, K = ``n_samples``;
    its limit is log E_{q(a|C)} p(X | a), = log p(X | C) when q(a | C) is the posterior; a
    stochastic lower bound on it). ``no_context`` (n,) is -log p̂(X)/|X| of the same characters
    (a ~ q(a | X), as ``nll``), ``class_nll`` (n,) the class model's. Reported per image (nats),
    with the per-character differences (no context - context: positive = the alphabet context helps;
    class - context) as mean, SE and 95% interval (paired over characters), and the share of
    characters whose likelihood the context raises.
    """
    char_alpha = s.character_alphabet()
    n_chars_of = torch.bincount(char_alpha[char_alpha >= 0], minlength=s.n_alphabets)
    keep = n_chars_of[char_alpha[chars]] >= 2
    if not bool(keep.any()):
        return {"skipped": "no chosen character has another character in its alphabet to give context"}
    kept = chars[keep]
    pools = [_other_characters(s, c) for c in kept.tolist()]
    M = int(min(int(n_context), min(len(p) for p in pools)))
    g = torch.Generator().manual_seed(int(seed) + 11)
    idx = torch.stack([p[torch.randperm(len(p), generator=g)[:M]] for p in pools])
    C = s.images[idx].to(device=X.device, dtype=torch.float32)
    keep_d = keep.to(X.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        hc = _nll_given_context(model, X[keep_d], C, n_samples, chunk)
    nc = np.asarray(no_context, dtype=np.float64)[keep.numpy()]
    ctx_mean, ctx_se = _mean_se(hc)
    no_mean, no_se = _mean_se(nc)
    out = {
        "n_samples": int(n_samples),
        "characters": int(len(kept)),
        "images_per_character": int(X.shape[1]),
        "context_images": M,
        "context": "images drawn at random from the other characters of the character's alphabet (never its own)",
        "estimator": "a ~ q(a | context), c ~ q(c | X, a), z ~ q(z | x, c) importance-sampled "
        "(vhe.evaluate.log_marginal_given_context): converges to log E_q(a|C) p(X | a) as K grows, "
        "a stochastic lower bound on it",
        "units": "nats per image; differences per character, paired, 95% interval = mean +- 1.96 SE",
        "nll_context_per_image": ctx_mean,
        "nll_context_se": ctx_se,
        "nll_no_context_per_image": no_mean,
        "nll_no_context_se": no_se,
        **_paired(nc - hc, "context_gain"),
        "context_helps_share": float(np.mean(nc - hc > 0)),
        "per_character": [
            {
                "character": s.character_names[c],
                "alphabet": s.alphabet_names[int(char_alpha[c])],
                "nll_context": float(a),
                "nll_no_context": float(b),
            }
            for c, a, b in zip(kept.tolist(), hc, nc)
        ],
    }
    if class_nll is not None:
        cn = np.asarray(class_nll, dtype=np.float64)[keep.numpy()]
        c_mean, c_se = _mean_se(cn)
        out.update({"class_nll_per_image": c_mean, "class_nll_se": c_se, **_paired(cn - hc, "context_gain_vs_class")})
        for row, b in zip(out["per_character"], cn):
            row["class_nll"] = float(b)
    return out


def _accuracy_entry(correct: list[bool], estimator: str) -> dict:
    n, k = len(correct), int(sum(correct))
    out = {
        "accuracy": k / n if n else None,
        "correct": k,
        "n_trials": n,
        "ci95": wilson_interval(k, n),
        "estimator": estimator,
    }
    if out["ci95"] is None and n:
        out["ci95_reason"] = too_few_units(n, "trial")
    return out


@torch.no_grad()
def oneshot_context(
    model,
    s,
    device,
    seed: int,
    n_samples: int,
    ways: int = 20,
    n_context: int = 10,
    class_model=None,
    episodes: int = 1,
) -> dict:
    """One-shot classification of new characters within an alphabet, with and without alphabet context.

    Per alphabet with at least 3 characters of >= 2 images, ``episodes`` episodes, each of W =
    min(``ways``, characters - 1) random characters, one support image and one query image each (W
    queries, W-way); its context C = ``n_context`` random images of the alphabet's *other* characters
    (not in the episode). An episode costs ~W^2 K decodes per arm: more episodes of fewer ways buy
    the same trials for less. Arms,
    all with K = ``n_samples``: ``with_context``: log p̂(x | D_j, C) (a ~ q(a | C) reweighted by D_j,
    vhe.evaluate.class_scores_given_context: the limit is log p(x | D_j, C) when q(a | C) is the
    posterior); ``prior_a``: the same estimator with a ~ p(a) (log p(x | D_j), no context);
    ``no_context``: the conditional estimator with a, c ~ q(· | D_j) (vhe.evaluate.class_scores,
    what the model does without context); ``class_model``: the class model's conditional estimator.
    Accuracies with Wilson intervals and McNemar's test of with_context against each other arm
    (same trials).
    """
    from vhe.evaluate import class_scores, class_scores_given_context

    g = torch.Generator().manual_seed(int(seed) + 13)
    episodes = max(1, int(episodes))
    char_alpha = s.character_alphabet()
    counts = s.class_counts()
    arms = {"with_context": [], "prior_a": [], "no_context": []}
    if class_model is not None:
        arms["class_model"] = []
    chance, used = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for a in range(s.n_alphabets):
            cs = [c for c in (char_alpha == a).nonzero().flatten().tolist() if int(counts[c]) >= 2]
            if len(cs) < 3:
                continue
            for _ in range(episodes):
                perm = torch.randperm(len(cs), generator=g).tolist()
                W = min(int(ways), len(cs) - 1)
                ep, others = [cs[i] for i in perm[:W]], [cs[i] for i in perm[W:]]
                sup, qry = [], []
                for c in ep:
                    members = (s.character == c).nonzero().flatten()
                    pick = members[torch.randperm(len(members), generator=g)[:2]]
                    sup.append(int(pick[0]))
                    qry.append(int(pick[1]))
                pool = torch.isin(s.character, torch.tensor(others)).nonzero().flatten()
                ctx = pool[torch.randperm(len(pool), generator=g)[: int(n_context)]]
                support = s.images[sup].to(device=device, dtype=torch.float32)[:, None]
                query = s.images[qry].to(device=device, dtype=torch.float32)
                context = s.images[ctx].to(device=device, dtype=torch.float32)
                want = torch.arange(W, device=device)
                scores = {
                    "with_context": class_scores_given_context(model, support, query, context, n_samples),
                    "prior_a": class_scores_given_context(model, support, query, None, n_samples),
                    "no_context": class_scores(model, support, query, "conditional", n_samples),
                }
                if class_model is not None:
                    scores["class_model"] = class_scores(class_model, support, query, "conditional", n_samples)
                for k, sc in scores.items():
                    arms[k] += (sc.argmax(dim=1) == want).cpu().tolist()
                chance += [1.0 / W] * W
                used.append({"alphabet": s.alphabet_names[a], "ways": W, "context_images": int(len(ctx))})
    if not used:
        return {"skipped": "no alphabet with 3 characters of 2 images (an episode and a context)"}
    names = {
        "with_context": "log p(x | D_j, C), a ~ q(a | C) reweighted by D_j (class_scores_given_context)",
        "prior_a": "log p(x | D_j), a ~ p(a) reweighted by D_j (class_scores_given_context, context None)",
        "no_context": "conditional: a, c ~ q(. | D_j) (class_scores 'conditional')",
        "class_model": "the class model's conditional estimator",
    }
    out = {
        "episodes": len(used),
        "episodes_per_alphabet": episodes,
        "n_samples": int(n_samples),
        "ways": int(ways),
        "shots": 1,
        "chance": float(np.mean(chance)),
        "per_episode": used,
        "design": "per alphabet, episodes_per_alphabet episodes of min(ways, characters - 1) characters, 1 "
        "support + 1 query image each; the context: random images of the alphabet's other characters",
        "units": "accuracies in [0, 1], Wilson 95% intervals",
        **{k: _accuracy_entry(v, names[k]) for k, v in arms.items()},
    }
    for k in arms:
        if k != "with_context":
            out[f"mcnemar_vs_{k}"] = mcnemar(arms["with_context"], arms[k])
    return out


def hierarchical_figure(model, s, device, seed, n_alphabets=4, n_shown=5, n_new=5, n_draws=6):
    """The hierarchical sample figure (see the module docstring) -> matplotlib figure, facts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(int(seed))
    char_alpha = s.character_alphabet()
    chars_of = {a: (char_alpha == a).nonzero().flatten() for a in range(s.n_alphabets)}
    alphas = [a for a in range(s.n_alphabets) if len(chars_of[a]) >= 1]
    rich = [a for a in alphas if len(chars_of[a]) > n_shown] or alphas
    order = torch.randperm(len(rich), generator=g).tolist()
    chosen = [rich[i] for i in order[:n_alphabets]]
    panels, facts = [], []
    torch.manual_seed(int(seed))
    for a in chosen:
        cs = chars_of[a][torch.randperm(len(chars_of[a]), generator=g)]
        shown, rest = cs[:n_shown], cs[n_shown:]
        shown_imgs = [s.images[(s.character == c).nonzero().flatten()[0]].float() for c in shown.tolist()]
        D_a = s.images[torch.isin(s.character, shown)].to(device=device, dtype=torch.float32)[None]
        _, v = ancestral(model, 1, inputs={"a": D_a}, values=None)
        a_val = v["a"]
        _, new = model.sample(values={"a": a_val.expand(n_new, -1)}, return_latents=True)  # c ~ p(c | a)
        c_val = new["c"]
        c_rep = c_val.repeat_interleave(n_draws, dim=0)
        x, _ = ancestral(model, n_new * n_draws, values={"a": a_val.expand(n_new * n_draws, -1), "c": c_rep})
        x = x.view(n_new, n_draws, *x.shape[1:]).cpu()
        real_rest = [
            s.images[(s.character == c).nonzero().flatten()[0]].float() for c in rest[: max(n_shown, n_draws)].tolist()
        ]
        rows = [shown_imgs] + [list(x[i]) for i in range(n_new)] + ([real_rest] if real_rest else [])
        labels = ["given"] + [f"new {i + 1}" for i in range(n_new)] + (["real, not given"] if real_rest else [])
        gaps = [1] + ([n_new + 1] if real_rest else [])
        panels.append((s.alphabet_names[a], rows, labels, gaps))
        facts.append(
            {
                "alphabet": s.alphabet_names[a],
                "given_characters": len(shown),
                "D_a_images": int(D_a.shape[1]),
                "new_characters": n_new,
                "draws_per_character": n_draws,
            }
        )
    width = max(n_shown, n_draws)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(1.1 + 0.42 * width * len(panels) + 0.9 * len(panels), 0.42 * (n_new + 3) + 0.9),
        squeeze=False,
    )
    for ax, (name, rows, labels, gaps) in zip(axes[0], panels):
        ax.imshow(_tile(rows, gap_rows=gaps), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(_centres(len(rows), gaps=gaps))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xticks([])
        ax.tick_params(length=0)
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.set_title(_short(name), fontsize=8)
    fig.suptitle(
        "New characters from p(c | a), a ~ q(a | given characters); each row: one c, x ~ p(x | c, z)", fontsize=8
    )
    fig.tight_layout()
    return fig, facts


@torch.no_grad()
def _new_character_features(model, a: torch.Tensor | None, n: int | None = None, chunk: int = 256) -> torch.Tensor:
    """shape_features of one new character per row of ``a`` (c ~ p(c | a), x the decoder's mean, z ~
    p(z)), or of ``n`` samples from the prior when ``a`` is None; generated ``chunk`` at a time."""
    total = len(a) if a is not None else int(n)
    out = []
    for i in range(0, total, chunk):
        m = min(chunk, total - i)
        x, _ = ancestral(model, m, values=None if a is None else {"a": a[i : i + m]})
        out.append(shape_features(x.float().cpu()))
    return torch.cat(out)


@torch.no_grad()
def alphabet_style(
    model,
    s,
    device,
    seed,
    n_shown: int = 5,
    n_new: int = 10,
    n_alphabet_samples: int = 1,
    control_model=None,
    n_boot: int = 2000,
) -> dict:
    """Are new characters drawn from p(c | a) in the style of the alphabet that a was inferred from?

    For every alphabet of ``s`` with more than ``n_shown + 1`` characters: ``n_alphabet_samples``
    draws a ~ q(a | all images of ``n_shown`` random characters of it) ("given"), each followed by
    ``n_new`` new characters c ~ p(c | a), one image each (decoder mean, z ~ p(z)). An alphabet
    classifier (logistic regression on ``shape_features``) is trained on the real images of half of
    each alphabet's remaining characters; its accuracy on the images of the other half (characters it
    never saw) is the ceiling. Reported: the fraction of new characters classified as the alphabet
    they were conditioned on (``accuracy``: the mean of the per-alphabet fractions, every alphabet
    having the same number of new characters) with a percentile bootstrap 95% interval over alphabets
    (``accuracy_ci95``, ``n_boot`` resamples), chance (1 / #alphabets: a model that ignores a scores
    it whatever the classifier's biases), the ceiling, and ``nearest_is_given``: the fraction of new
    characters whose nearest real image (cosine on shape features, all images of the alphabet)
    belongs to a given character (high = copies, not new characters), next to the share of the
    alphabet's images that are given ones (what a random real image would score).

    ``controls``: the same measure for generators that cannot know the alphabet, which should sit at
    chance (their interval covering it): ``prior_a`` (this model with a ~ p(a), one a per alphabet
    sample), and ``class_model`` (``control_model``, the class-structured model: x ~ p(x), c ~ p(c)),
    each with the same number of new characters per alphabet, labelled with that alphabet.
    """
    g = torch.Generator().manual_seed(int(seed) + 7)
    char_alpha = s.character_alphabet()
    alphas = [a for a in range(s.n_alphabets) if int((char_alpha == a).sum()) > n_shown + 1]
    if len(alphas) < 2:
        return {"skipped": "fewer than 2 alphabets with enough characters"}
    R = max(1, int(n_alphabet_samples))
    train_chars, test_chars, a_vals, refs, given_share = [], [], [], [], []
    torch.manual_seed(int(seed) + 7)
    for a in alphas:
        cs = (char_alpha == a).nonzero().flatten()
        cs = cs[torch.randperm(len(cs), generator=g)]
        shown, rest = cs[:n_shown], cs[n_shown:]
        half = max(1, len(rest) // 2)
        train_chars.append(rest[:half])
        test_chars.append(rest[half:])
        D_a = s.images[torch.isin(s.character, shown)].to(device=device, dtype=torch.float32)[None]
        _, v = ancestral(model, R, inputs={"a": D_a.expand(R, *D_a.shape[1:])})  # R draws a ~ q(a | D_a)
        a_vals.append(v["a"])
        in_alpha = torch.isin(s.character, cs)
        ref_given = torch.isin(s.character[in_alpha], shown)
        refs.append((ref_given, shape_features(s.images[in_alpha])))
        given_share.append(float(ref_given.double().mean()))
    # n_new new characters c ~ p(c | a) per draw of a, generated in batches: (alphabet, draw, character) order
    feats_all = _new_character_features(model, torch.cat(a_vals).repeat_interleave(n_new, dim=0))
    per = R * n_new
    new_alpha = [a for a in alphas for _ in range(per)]
    new_feats = [feats_all[i * per : (i + 1) * per] for i in range(len(alphas))]
    near_given = [ref_given[_nearest(f, ref_feats)].double() for f, (ref_given, ref_feats) in zip(new_feats, refs)]
    lab = torch.full((s.n_alphabets,), -1, dtype=torch.int64)
    lab[torch.tensor(alphas)] = torch.arange(len(alphas))
    tr = torch.isin(s.character, torch.cat(train_chars))
    te = torch.isin(s.character, torch.cat(test_chars))
    predict = fit_logistic(shape_features(s.images[tr]), lab[s.alphabet[tr]], len(alphas))
    ceiling = (
        float((predict(shape_features(s.images[te])) == lab[s.alphabet[te]]).double().mean()) if te.any() else None
    )
    want = lab[torch.tensor(new_alpha)]
    per_alpha = (predict(torch.cat(new_feats)) == want).double().view(len(alphas), per).mean(dim=1)
    chance = 1.0 / len(alphas)

    def summary(acc: torch.Tensor, boot_seed: int) -> dict:
        """Mean of the per-alphabet accuracies ``acc`` with its bootstrap interval over alphabets."""
        ci = bootstrap_interval(acc.numpy(), n_boot, boot_seed)
        out = {
            "accuracy": float(acc.mean()),
            "accuracy_ci95": ci,
            "per_alphabet": {s.alphabet_names[a]: float(v) for a, v in zip(alphas, acc.tolist())},
        }
        if ci is None:
            out["accuracy_ci95_reason"] = too_few_units(len(acc), "alphabet")
        return out

    main = summary(per_alpha, int(seed) + 17)
    controls = {}
    gens = []
    if _has_latent(model, "a"):
        gens.append(("prior_a", model, True))
    if control_model is not None:
        gens.append(("class_model", control_model, False))
    for name, gen, prior_a in gens:
        torch.manual_seed(int(seed) + 8)
        if prior_a:  # a ~ p(a), one per alphabet sample
            _, v = ancestral(gen, len(alphas) * R)
            feats = _new_character_features(gen, v["a"].repeat_interleave(n_new, dim=0))
        else:  # c ~ p(c): no alphabet at all
            feats = _new_character_features(gen, None, n=len(alphas) * per)
        c = summary((predict(feats) == want).double().view(len(alphas), per).mean(dim=1), int(seed) + 18)
        ci = c["accuracy_ci95"]
        c.update(
            {
                "chance_in_ci95": None if ci is None else bool(ci[0] <= chance <= ci[1]),
                "generator": (
                    "this model with a ~ p(a) (one a per alphabet sample), c ~ p(c | a)"
                    if prior_a
                    else "the class-structured comparison model, c ~ p(c): no alphabet latent"
                ),
            }
        )
        controls[name] = c
    if control_model is None:
        controls["class_model"] = None
        controls["class_model_reason"] = "no class-structured comparison model given"
    return {
        "alphabets": len(alphas),
        "given_characters": n_shown,
        "new_per_alphabet": n_new * R,
        "alphabet_samples": R,
        "new_per_alphabet_sample": n_new,
        **main,
        "chance": chance,
        "interval": f"percentile bootstrap over alphabets ({n_boot} resamples), 95%",
        "classifier": "logistic regression on blurred silhouettes (shape_features), trained on real images "
        "of half of each alphabet's non-given characters",
        "classifier_accuracy_real": ceiling,
        **(
            {}
            if ceiling is not None
            else {"classifier_accuracy_real_reason": "no held-out characters to test the classifier on"}
        ),
        "nearest_is_given": float(torch.cat(near_given).mean()),
        "given_share_of_images": float(np.mean(given_share)),
        "controls": controls,
    }


def context_images(cfg, setting: int | None) -> int:
    """|C|, images in the alphabet context of ``context_nll`` and ``oneshot_context``: ``setting``
    (evaluation.structured.context_images or --context-images), or, when None, as many as the a
    encoder saw in training (|D_a|: train.k_shot_alphabet)."""
    from experiments.hierarchical import wanted_k_shot

    return int(setting) if setting is not None else int(wanted_k_shot(cfg)["a"])


def run_hierarchical(cfg, model, args, device) -> dict:
    """Every hierarchical measure (module docstring) of ``model`` on the evaluation split -> the
    metrics dict (bounds and -log p in nats per image, accuracies in [0, 1]). ``args``: the parsed
    ``analysis.structured`` command line with its evaluation settings resolved (seed, n_samples,
    context_images, oneshot_ways, style_alphabet_samples: analysis.structured.structured_settings)."""
    from experiments import datasets
    from experiments.common import model_section
    from experiments.config import evaluation_for
    from experiments.hierarchical import capped_k_shot, labels_of, wanted_k_shot

    import vhe

    m = model_section(cfg)
    objective = vhe.get_objective(m.get("objective", "vhe"))
    seed = args.seed
    timer = PhaseTimer()
    t_start = time.perf_counter()
    n_context = context_images(cfg, args.context_images)
    k_classify = int(evaluation_for(cfg, m.get("decoder"))["classification_samples"])
    ev = datasets.load_split(cfg, "evaluation")
    max_classes = args.max_classes if args.max_classes is not None else cfg["evaluation"]["max_classes"]
    targets, n_target_chars = _pick_targets(ev, max_classes, seed)
    targets = targets.to(device)
    k_shot = capped_k_shot(labels_of(ev), wanted_k_shot(cfg))
    loader = vhe.DataLoader(
        ev.images,
        labels=labels_of(ev),
        k_shot=k_shot,
        batch_size=args.batch_size,
        resample={"a": objective.resample, "c": objective.resample, "z": True},
        shuffle=False,
        seed=seed,
        device=device,
        dtype=torch.float32,
    )
    with timer("bounds"):
        hb, hkl = episode_bounds(model, loader, targets, objective.rescale, args.batch_size, seed)
    h_mean, h_se = _mean_se(hb)
    out = {
        "evaluation_set": {
            "images": len(ev),
            "characters": ev.n_classes,
            "alphabets": ev.n_alphabets,
            "targets": int(len(targets)),
            "target_characters": int(n_target_chars),
            "k_shot": k_shot,
            "sizes": "|X_a| = images in the alphabet, |X_c| = images of the character, |X_z| = 1",
        },
        "bound_per_image": h_mean,
        "bound_se": h_se,
        "kl": hkl,
        "class_model": None,
        "alphabet_improves_bound": None,
        "bound_difference": None,
        "bound_difference_se": None,
    }
    class_model = None
    if args.class_checkpoint:
        from experiments.config import load_config
        from experiments.registry import load_checkpoint

        ccfg = None
        if args.class_config:
            ccfg = load_config(args.class_config)
        class_model, ccfg, cckpt = load_checkpoint(args.class_checkpoint, device=device, cfg=ccfg)
        cm = model_section(ccfg)
        cobj = vhe.get_objective(cm.get("objective", "vhe"))
        clabels = {"c": ev.character, "z": torch.arange(len(ev))}
        ck = capped_k_shot(clabels, {"c": int(cm["train"]["k_shot"]), "z": 1})
        cloader = vhe.DataLoader(
            ev.images,
            labels=clabels,
            k_shot=ck,
            batch_size=args.batch_size,
            resample={"c": cobj.resample, "z": True},
            shuffle=False,
            seed=seed,
            device=device,
            dtype=torch.float32,
        )
        with timer("class_bounds"):
            cb, ckl = episode_bounds(class_model, cloader, targets, cobj.rescale, args.batch_size, seed)
        c_mean, c_se = _mean_se(cb)
        d_mean, d_se = _mean_se(hb - cb)
        out["class_model"] = {
            "name": cm.get("name"),
            "objective": cobj.name,
            "decoder": cm.get("decoder"),
            "checkpoint": str(args.class_checkpoint),
            "checkpoint_step": cckpt.get("step"),
            "k_shot": ck,
            "bound_per_image": c_mean,
            "bound_se": c_se,
            "kl": ckl,
        }
        out["bound_difference"] = d_mean
        out["bound_difference_se"] = d_se
        out["alphabet_improves_bound"] = bool(h_mean > c_mean)
    # importance-sampled -log p(X)/|X| of whole evaluation characters (no alphabet context)
    if args.n_samples and args.n_samples > 0:
        n_chars = min(args.nll_classes, ev.n_classes)
        g = torch.Generator().manual_seed(int(seed) + 1)
        chars = torch.randperm(ev.n_classes, generator=g)[:n_chars]
        X = _class_tensors(ev, chars, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            with timer("likelihood"):
                hn = _nll(model, X, args.n_samples)
            nll, nll_se = _mean_se(hn)
            res = {
                "n_samples": int(args.n_samples),
                "characters": int(n_chars),
                "images_per_character": int(X.shape[1]),
                "nll_per_image": nll,
                "nll_se": nll_se,
            }
            cn = None
            if class_model is not None:
                torch.manual_seed(int(seed))
                with timer("class_likelihood"):
                    cn = _nll(class_model, X, args.n_samples)
                c_mean, c_se = _mean_se(cn)
                d_mean, d_se = _mean_se(cn - hn)
                res.update(
                    {
                        "class_nll_per_image": c_mean,
                        "class_nll_se": c_se,
                        "nll_improvement": d_mean,
                        "nll_improvement_se": d_se,
                    }
                )
        out["nll"] = res
        # the same characters given a context of their alphabet's other characters (a ~ q(a | context))
        with timer("context_likelihood"):
            out["context_nll"] = context_likelihood(
                model, ev, chars, X, hn, args.n_samples, n_context, seed, class_nll=cn
            )
    with timer("oneshot_context"):
        out["oneshot_context"] = oneshot_context(
            model,
            ev,
            device,
            seed,
            n_samples=k_classify,
            ways=int(args.oneshot_ways),
            n_context=n_context,
            class_model=class_model,
            episodes=int(args.oneshot_episodes),
        )
    with timer("alphabet_style"):
        out["alphabet_style"] = alphabet_style(
            model,
            ev,
            device,
            seed,
            n_shown=args.n_shown,
            n_new=args.style_new,
            n_alphabet_samples=int(args.style_alphabet_samples),
            control_model=class_model,
        )
    with timer("samples_figure"):
        fig, facts = hierarchical_figure(
            model,
            ev,
            device,
            seed,
            n_alphabets=args.n_alphabets,
            n_shown=args.n_shown,
            n_new=args.n_new,
            n_draws=args.n_draws,
        )
    out["figure_facts"] = facts
    out["figures"] = save_figure(fig, Path(args.figures) / f"{figure_prefix(cfg)}_samples.png")
    timer.seconds["total"] = round(time.perf_counter() - t_start, 3)
    out["eval_seconds"] = dict(timer.seconds)
    return se_reasons(out)


def matched_step_bounds(history_a: Path, history_b: Path) -> dict | None:
    """Validation bounds (nats per image) of two training runs at the last step both validated at:
    {"step", "model", "class_model"} from their history.csv files (None if they share no step)."""
    import csv

    def bounds(path):
        if not path.is_file():
            return {}
        with open(path, newline="") as f:
            return {int(float(r["step"])): float(r["val_bound"]) for r in csv.DictReader(f) if r.get("val_bound")}

    a, b = bounds(history_a), bounds(history_b)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    s = common[-1]
    return {
        "step": s,
        "model": a[s],
        "class_model": b[s],
        "note": "validation bounds of each model's own validation episodes at the same training step",
    }
