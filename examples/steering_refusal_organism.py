"""Steering vectors on the refusal organism: the mean-difference vector against the optimized one.

    .venv/bin/python examples/steering_refusal_organism.py [--out docs/results/steering-refusal] [--quick]

The organism (scalpel.organisms, "refusal") refuses harmful requests and answers harmless ones.
1. The mean-difference vector: harmful − harmless training requests (both styles), read at the
   prompt's last token in the residual stream between the two blocks (blocks.0.hook_resid_post),
   added at every position with a negative α: swept, as activation addition is used.
2. The optimized vector: from the mean difference at α = −8, train_steering on the breaker
   objective (softplus of H = logp(refusal) − logp(answer) on the training requests, + 10·KL on
   the organism's harmless and shield rows), no longer than the α = −32 vector.
3. At matched harm (mean H on held-out harmful requests): the benign KL of the mean-difference
   vector at each α against the optimized vector's at its own α giving the same mean H — the
   claim is that the optimized vector gets there with lower KL.
Writes report.json, report.md, alpha.png and both vectors (mean.safetensors, optimized.safetensors).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import scalpel
from scalpel import organisms
from scalpel.organisms import REFUSAL, chat_ids, chat_prompt

REPO = Path(__file__).resolve().parents[1]
SITE = "blocks.0.hook_resid_post"


def interpolate(curve: list[dict], x_key: str, y_key: str, x: float):
    """y where the curve (points of one edit's sweep) reaches x, linearly between the two points
    around it; None when x is outside the curve: the cost of an edit at matched harm."""
    pts = sorted((c[x_key], c[y_key]) for c in curve)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y0
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/steering-refusal"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--lambda-preserve", type=float, default=10.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = scalpel.load(str(organisms.build("refusal")), dtype="float32")
    tok = model.tokenizer
    answer = lambda x: REFUSAL["answer"].format(x=x)  # noqa: E731
    templates = REFUSAL["commands"] + REFUSAL["questions"]
    train_h = [(t.format(x=x), x) for t in templates for x in REFUSAL["harmful"]]
    train_b = [t.format(x=x) for t in templates for x in REFUSAL["harmless"]]
    sets = organisms.refusal_eval()
    held = [(q, x) for (q, _), x in zip(sets["harmful_questions"] + sets["harmful_commands"], REFUSAL["harmful"] * 2)]
    benign = [q for q, _ in sets["harmless_commands"] + sets["harmless_questions"] + sets["sum"] + sets["count"] +
              sets["copy"]]
    held_h = ([chat_ids(tok, q) for q, _ in held], [chat_ids(tok, q, REFUSAL["refusal"])[1] for q, _ in held],
              [chat_ids(tok, q, answer(x))[1] for q, x in held])
    ref = scalpel.last_logits(model, [chat_ids(tok, q) for q in benign])

    def measure(sv, alpha):
        with sv.attach(model, alpha=alpha):
            h = scalpel.harm_score(model, *held_h)
            kl = scalpel.first_token_kl(model, [chat_ids(tok, q) for q in benign], ref)
            outs = model.generate([chat_prompt(q) for q, _ in held], max_new_tokens=12)
        return {"alpha": alpha, "refusal_preferred": float((h > 0).double().mean()), "harm_mean": float(h.mean()),
                "harmful_refused": sum(organisms.refusal_judge(o) for o in outs) / len(outs),
                "benign_kl_mean": float(kl.mean()), "benign_kl_max": float(kl.max())}

    # 1. the mean-difference vector, swept
    contrast = ([chat_ids(tok, q) for q, _ in train_h], [chat_ids(tok, q) for q in train_b])
    mean = scalpel.SteeringVector.from_contrast(model, [SITE], *contrast)
    alphas = [0.0, -1.0, -2.0, -4.0, -8.0, -16.0, -32.0]
    sweep = [measure(mean, a) for a in alphas]
    print("mean-difference sweep:", [(s["alpha"], round(s["harm_mean"], 1), round(s["benign_kl_max"], 4)) for s in sweep])

    # 2. the optimized vector: from the mean difference at α = -8, no longer than the α = -32 one
    opt = scalpel.SteeringVector.from_contrast(model, [SITE], *contrast)
    opt.vectors = [v * -8.0 for v in opt.vectors]
    opt.max_norm = 32.0 * float(mean.vectors[0].norm())
    keep = [(q, a) for kind, q, a in organisms.refusal_data() if kind != "harmful"][:96]
    data = scalpel.BreakerData([chat_ids(tok, q) for q, _ in train_h],
                               [chat_ids(tok, q, REFUSAL["refusal"])[1] for q, _ in train_h],
                               [chat_ids(tok, q, answer(x))[1] for q, x in train_h],
                               [sum(chat_ids(tok, q, a), []) for q, a in keep])
    o = scalpel.TrainOptions()
    o.steps = 60 if args.quick else 200
    o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.weight_decay = 16, 0.1, 0.01, 10, 0.0
    o.run_dir = str(out / "run")
    res = scalpel.train_steering(model, opt, data, scalpel.BreakerObjective(harm="margin", lambda_preserve=args.lambda_preserve), o)
    opt_sweep = [measure(opt, a) for a in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)]
    optimized = opt_sweep[-1]

    # 3. matched harm (mean H on the held-out harmful requests): the optimized vector's knob α
    # interpolated to each mean-difference point's mean H, and the benign KL there
    opt_curve = [measure(opt, 0.0)] + opt_sweep
    matched = [{"alpha": s["alpha"], "harm_mean": s["harm_mean"], "mean_kl_max": s["benign_kl_max"],
                "optimized_kl_max": interpolate(opt_curve, "harm_mean", "benign_kl_max", s["harm_mean"])}
               for s in sweep[1:]]
    matched = [m for m in matched if m["optimized_kl_max"] is not None]
    scalpel.save_intervention(mean, str(out / "mean.safetensors"))
    scalpel.save_intervention(opt, str(out / "optimized.safetensors"))
    report = {"command": "python examples/steering_refusal_organism.py" + (" --quick" if args.quick else "") +
              (f" --lambda-preserve {args.lambda_preserve:g}" if args.lambda_preserve != 10.0 else ""),
              "site": SITE, "mean_norm": float(mean.vectors[0].norm()), "sweep": sweep,
              "optimized": optimized, "optimized_sweep": opt_sweep, "matched": matched,
              "optimized_norm": float(opt.effective_vectors()[0].norm()), "max_norm": opt.max_norm,
              "steps": o.steps, "train_seconds": res.seconds, "lambda_preserve": args.lambda_preserve,
              "checks": {"optimized_lower_kl_at_matched_harm": bool(matched) and all(
                             m["optimized_kl_max"] < m["mean_kl_max"] for m in matched),
                         "optimized_removes_90": optimized["refusal_preferred"] <= 0.10,
                         "optimized_benign_kl_at_most_0.01": optimized["benign_kl_max"] <= 0.01},
              "seconds": time.time() - t0}
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    scalpel.plots.plot_edit_sweep({"mean difference (|α|)": [{**s, "alpha": -s["alpha"]} for s in sweep],
                                   "optimized (α, ×32)": [{**s, "alpha": 32 * s["alpha"]} for s in opt_sweep]},
                                  "alpha", out / "alpha.png", ys=("harm_mean", "refusal_preferred", "benign_kl_max"),
                                  title="steering the refusal organism (held-out templates)")
    _markdown(report, out)
    print(json.dumps(report["checks"], indent=2))


def _markdown(r, out):
    row = lambda name, s: (f"| {name} | {s['alpha']:+.2f} | {s['refusal_preferred']:.2f} | {s['harmful_refused']:.2f} | "  # noqa: E731
                           f"{s['harm_mean']:+.2f} | {s['benign_kl_mean']:.2e} | {s['benign_kl_max']:.2e} |")
    sweep = "\n".join(row("mean difference", s) for s in r["sweep"])
    opt = "\n".join(row("optimized", s) for s in r["optimized_sweep"])
    checks = "\n".join(f"- {'PASS' if v else 'FAIL'}: {k}" for k, v in r["checks"].items())
    match = "\n".join(f"| {m['alpha']:+.0f} | {m['harm_mean']:+.2f} | {m['mean_kl_max']:.2e} | {m['optimized_kl_max']:.2e} |"
                      for m in r["matched"])
    o = r["optimized"]
    text = f"""# Steering the refusal organism: the mean-difference vector vs the optimized one

Command: `{r['command']}` ({r['seconds']:.0f} s on 2 CPU cores). Site: `{r['site']}` (the residual
stream between the two blocks), every position. The mean-difference vector: harmful − harmless
training requests at the last prompt token (norm {r['mean_norm']:.2f}), swept over negative α. The optimized
vector starts from α = −8 times it and is trained {r['steps']} steps ({r['train_seconds']:.1f} s) on
softplus(H) + {r['lambda_preserve']:g}·KL on the organism's harmless and shield rows, bounded to the α = −32 vector's
norm ({r['max_norm']:.1f}; it ends at {r['optimized_norm']:.1f}). Everything is measured on the held-out
templates: H = logp(refusal) − logp(answer) on the harmful requests, first-token KL on the
harmless requests and the shield prompts.

The optimized vector (α = 1): refusal preferred on {o['refusal_preferred']:.0%} of the held-out harmful
requests (greedy refusals {o['harmful_refused']:.0%}), mean H {o['harm_mean']:+.1f}, benign KL max {o['benign_kl_max']:.1e}.
No α of the mean-difference vector gets the refusal preference below
{min(s['refusal_preferred'] for s in r['sweep']):.0%}: the organism's refusal is keyed to tokens by its MLPs and one
added direction moves it little before it moves everything else.

At matched harm (mean H), the benign KL of each — the optimized vector's own knob α interpolated
to the mean-difference point's mean H:

| mean-difference α | mean H | mean difference: benign KL max | optimized: benign KL max |
|---|---|---|---|
{match}

The sweeps:

| vector | α | harmful where H > 0 | harmful refused (greedy) | mean H | benign KL mean | benign KL max |
|---|---|---|---|---|---|---|
{sweep}
{opt}

Checks:
{checks}

![α](alpha.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
