"""The hierarchical model's evaluation: bounds and -log p on held-out alphabets against the
class-structured model, new characters c ~ p(c | a) (figure) and their alphabet style
(``python -m analysis.structured`` runs it; see its docstring for the metrics)."""
from __future__ import annotations

import logging
from pathlib import Path

from experiments.artifacts import save_figure

import numpy as np
import torch

from .structured_common import (ancestral, episode_bounds, figure_prefix, fit_logistic, shape_features, _centres,
                                _mean_se, _nearest, _short, _tile, se_reasons)

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
        out.append(log_marginal(model, X[i:i + chunk], n_samples=n_samples, per_element=("z",)).double().cpu())
    return -torch.cat(out).numpy() / X.shape[1]   # (C,) nats per image


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
        real_rest = [s.images[(s.character == c).nonzero().flatten()[0]].float()
                     for c in rest[: max(n_shown, n_draws)].tolist()]
        rows = [shown_imgs] + [list(x[i]) for i in range(n_new)] + ([real_rest] if real_rest else [])
        labels = ["given"] + [f"new {i + 1}" for i in range(n_new)] + (["real, not given"] if real_rest else [])
        gaps = [1] + ([n_new + 1] if real_rest else [])
        panels.append((s.alphabet_names[a], rows, labels, gaps))
        facts.append({"alphabet": s.alphabet_names[a], "given_characters": len(shown), "D_a_images": int(D_a.shape[1]),
                      "new_characters": n_new, "draws_per_character": n_draws})
    width = max(n_shown, n_draws)
    fig, axes = plt.subplots(1, len(panels), figsize=(1.1 + 0.42 * width * len(panels) + 0.9 * len(panels),
                                                       0.42 * (n_new + 3) + 0.9), squeeze=False)
    for ax, (name, rows, labels, gaps) in zip(axes[0], panels):
        ax.imshow(_tile(rows, gap_rows=gaps), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(_centres(len(rows), gaps=gaps))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xticks([])
        ax.tick_params(length=0)
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.set_title(_short(name), fontsize=8)
    fig.suptitle("New characters from p(c | a), a ~ q(a | given characters); each row: one c, x ~ p(x | c, z)",
                 fontsize=8)
    fig.tight_layout()
    return fig, facts


@torch.no_grad()
def alphabet_style(model, s, device, seed, n_shown: int = 5, n_new: int = 10) -> dict:
    """Are new characters drawn from p(c | a) in the style of the alphabet that a was inferred from?

    For every alphabet of ``s`` with more than ``n_shown + 1`` characters: a ~ q(a | all images of
    ``n_shown`` random characters of it) ("given"), then ``n_new`` new characters c ~ p(c | a), one
    image each (decoder mean, z ~ p(z)). An alphabet classifier (logistic regression on
    ``shape_features``) is trained on the real images of half of each alphabet's remaining
    characters; its accuracy on the images of the other half (characters it never saw) is the
    ceiling. Reported: the fraction of new characters classified as the alphabet they were
    conditioned on, chance (1 / #alphabets: every alphabet gets the same number of new characters,
    so a model that ignores a scores it whatever the classifier's biases), the ceiling, and
    ``nearest_is_given``: the fraction of new characters whose nearest real image (cosine on shape
    features, all images of the alphabet) belongs to a given character (high = copies, not new
    characters), next to the share of the alphabet's images that are given ones (what a random
    real image would score).
    """
    g = torch.Generator().manual_seed(int(seed) + 7)
    char_alpha = s.character_alphabet()
    alphas = [a for a in range(s.n_alphabets) if int((char_alpha == a).sum()) > n_shown + 1]
    if len(alphas) < 2:
        return {"skipped": "fewer than 2 alphabets with enough characters"}
    train_chars, test_chars, new_feats, new_alpha, near_given, given_share = [], [], [], [], [], []
    torch.manual_seed(int(seed) + 7)
    for a in alphas:
        cs = (char_alpha == a).nonzero().flatten()
        cs = cs[torch.randperm(len(cs), generator=g)]
        shown, rest = cs[:n_shown], cs[n_shown:]
        half = max(1, len(rest) // 2)
        train_chars.append(rest[:half])
        test_chars.append(rest[half:])
        D_a = s.images[torch.isin(s.character, shown)].to(device=device, dtype=torch.float32)[None]
        _, v = ancestral(model, 1, inputs={"a": D_a})
        x, _ = ancestral(model, n_new, values={"a": v["a"].expand(n_new, -1)})
        feats = shape_features(x.float().cpu())
        new_feats.append(feats)
        new_alpha += [a] * n_new
        in_alpha = torch.isin(s.character, cs)
        ref_given = torch.isin(s.character[in_alpha], shown)
        near_given.append(ref_given[_nearest(feats, shape_features(s.images[in_alpha]))].double())
        given_share.append(float(ref_given.double().mean()))
    lab = torch.full((s.n_alphabets,), -1, dtype=torch.int64)
    lab[torch.tensor(alphas)] = torch.arange(len(alphas))
    tr = torch.isin(s.character, torch.cat(train_chars))
    te = torch.isin(s.character, torch.cat(test_chars))
    predict = fit_logistic(shape_features(s.images[tr]), lab[s.alphabet[tr]], len(alphas))
    ceiling = float((predict(shape_features(s.images[te])) == lab[s.alphabet[te]]).double().mean()) if te.any() else None
    want = lab[torch.tensor(new_alpha)]
    acc = float((predict(torch.cat(new_feats)) == want).double().mean())
    return {"alphabets": len(alphas), "given_characters": n_shown, "new_per_alphabet": n_new,
            "accuracy": acc, "chance": 1.0 / len(alphas),
            "classifier": "logistic regression on blurred silhouettes (shape_features), trained on real images "
                          "of half of each alphabet's non-given characters",
            "classifier_accuracy_real": ceiling,
            **({} if ceiling is not None else
               {"classifier_accuracy_real_reason": "no held-out characters to test the classifier on"}),
            "nearest_is_given": float(torch.cat(near_given).mean()),
            "given_share_of_images": float(np.mean(given_share))}


def run_hierarchical(cfg, model, args, device) -> dict:
    from experiments import datasets
    from experiments.common import model_section
    from experiments.hierarchical import capped_k_shot, labels_of, wanted_k_shot

    import vhe

    m = model_section(cfg)
    objective = vhe.get_objective(m.get("objective", "vhe"))
    seed = args.seed
    ev = datasets.load_split(cfg, "evaluation")
    max_classes = args.max_classes if args.max_classes is not None else cfg["evaluation"]["max_classes"]
    targets, n_target_chars = _pick_targets(ev, max_classes, seed)
    targets = targets.to(device)
    k_shot = capped_k_shot(labels_of(ev), wanted_k_shot(cfg))
    loader = vhe.DataLoader(ev.images, labels=labels_of(ev), k_shot=k_shot, batch_size=args.batch_size,
                            resample={"a": objective.resample, "c": objective.resample, "z": True}, shuffle=False,
                            seed=seed, device=device, dtype=torch.float32)
    hb, hkl = episode_bounds(model, loader, targets, objective.rescale, args.batch_size, seed)
    h_mean, h_se = _mean_se(hb)
    out = {
        "evaluation_set": {"images": len(ev), "characters": ev.n_classes, "alphabets": ev.n_alphabets,
                           "targets": int(len(targets)), "target_characters": int(n_target_chars),
                           "k_shot": k_shot, "sizes": "|X_a| = images in the alphabet, |X_c| = images of the "
                                                      "character, |X_z| = 1"},
        "bound_per_image": h_mean, "bound_se": h_se, "kl": hkl,
        "class_model": None, "alphabet_improves_bound": None, "bound_difference": None, "bound_difference_se": None,
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
        cloader = vhe.DataLoader(ev.images, labels=clabels, k_shot=ck, batch_size=args.batch_size,
                                 resample={"c": cobj.resample, "z": True}, shuffle=False, seed=seed, device=device,
                                 dtype=torch.float32)
        cb, ckl = episode_bounds(class_model, cloader, targets, cobj.rescale, args.batch_size, seed)
        c_mean, c_se = _mean_se(cb)
        d_mean, d_se = _mean_se(hb - cb)
        out["class_model"] = {"name": cm.get("name"), "objective": cobj.name, "decoder": cm.get("decoder"),
                              "checkpoint": str(args.class_checkpoint), "checkpoint_step": cckpt.get("step"),
                              "k_shot": ck, "bound_per_image": c_mean, "bound_se": c_se, "kl": ckl}
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
            hn = _nll(model, X, args.n_samples)
            nll, nll_se = _mean_se(hn)
            res = {"n_samples": int(args.n_samples), "characters": int(n_chars),
                   "images_per_character": int(X.shape[1]), "nll_per_image": nll, "nll_se": nll_se}
            if class_model is not None:
                torch.manual_seed(int(seed))
                cn = _nll(class_model, X, args.n_samples)
                c_mean, c_se = _mean_se(cn)
                d_mean, d_se = _mean_se(cn - hn)
                res.update({"class_nll_per_image": c_mean, "class_nll_se": c_se,
                            "nll_improvement": d_mean, "nll_improvement_se": d_se})
        out["nll"] = res
    out["alphabet_style"] = alphabet_style(model, ev, device, seed, n_shown=args.n_shown, n_new=args.style_new)
    fig, facts = hierarchical_figure(model, ev, device, seed, n_alphabets=args.n_alphabets, n_shown=args.n_shown,
                                     n_new=args.n_new, n_draws=args.n_draws)
    out["figure_facts"] = facts
    out["figures"] = save_figure(fig, Path(args.figures) / f"{figure_prefix(cfg)}_samples.png")
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
    return {"step": s, "model": a[s], "class_model": b[s],
            "note": "validation bounds of each model's own validation episodes at the same training step"}
