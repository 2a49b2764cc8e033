"""Steering vectors on Gemma 3 270M's occupational gender bias: the mean-difference vector
against the optimized one, at matched harm.

    .venv/bin/python examples/steering_gemma_gender.py [--out docs/results/steering-gemma-gender] [--layer 9]

The harm (scalpel.bias, as in examples/breaker_gemma_gender.py): H = logit(stereotyped pronoun) −
logit(the other) after an occupation; the edit should drive |H| to 0 on held-out occupations and
frames without moving neutral text.
1. The mean-difference vector at blocks.{layer}.hook_resid_post: female- minus male-dominated
   occupations in the training frames, last token — swept over α. One vector moves every prompt
   the same way; the sweep shows how far that goes.
2. The optimized vector: from the sweep's best α, train_steering on mean H² + 10·KL on neutral
   text (the breaker's objective), 60 steps, no longer than 1.5× that vector.
3. At matched harm (held-out mean |H|): neutral KL of each, interpolated along each one's α.
Writes report.json, report.md and alpha.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import scalpel
from scalpel import bias

sys.path.insert(0, str(Path(__file__).resolve().parent))
from steering_refusal_organism import interpolate  # noqa: E402  (one home: the cost at matched harm)

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/steering-gemma-gender"))
    ap.add_argument("--layer", type=int, default=9)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = scalpel.load("gemma3-270m", dtype="float32")
    tok = model.tokenizer
    site = scalpel.hook_name("resid_post", args.layer)
    pairs = bias.gender_pairs("train")
    texts = bias.neutral_text()
    preserve_texts, neutral_eval = texts[0::2], texts[1::2]
    neutral_ids = [tok.encode(t) for t in neutral_eval]
    batch = scalpel.make_lm_batch([scalpel.LMExample(s) for s in neutral_ids])
    with torch.no_grad():
        ref = model(batch.tokens, batch.attention_mask)

    def measure(sv, alpha):
        with sv.attach(model, alpha=alpha):
            r = bias.gender_bias(model, "held_out", tokenizer=tok)
            kl = scalpel.sequence_kl(model(batch.tokens, batch.attention_mask), ref, batch.attention_mask)
        return {"alpha": alpha, "mean_abs_H": sum(abs(b) for b in r["bias"]) / len(r["bias"]), "mean_bias": r["mean"],
                "gap": r["gap"], "neutral_kl_mean": float(kl.mean())}

    female = [tok.encode(p["prompt"]) for p in pairs if p["stereotype"] == "female"]
    male = [tok.encode(p["prompt"]) for p in pairs if p["stereotype"] == "male"]
    mean = scalpel.SteeringVector.from_contrast(model, [site], female, male)
    alphas = [0.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0]
    sweep = sorted((measure(mean, a) for a in alphas), key=lambda s: s["alpha"])
    best = min(sweep, key=lambda s: s["mean_abs_H"])
    print("mean-difference sweep:", [(s["alpha"], round(s["mean_abs_H"], 3), round(s["neutral_kl_mean"], 4)) for s in sweep])

    opt = scalpel.SteeringVector.from_contrast(model, [site], female, male)
    start = best["alpha"] if best["alpha"] != 0.0 else 0.25
    opt.vectors = [v * start for v in opt.vectors]
    opt.max_norm = 1.5 * float(opt.vectors[0].norm())
    data = scalpel.breaker_data(tok, [p["prompt"] for p in pairs], [p["harmful"] for p in pairs],
                                [p["neutral"] for p in pairs], preserve=preserve_texts)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.weight_decay = args.steps, 16, 0.5, 0.05, 5, 0.0
    o.run_dir = str(out / "run")
    res = scalpel.train_steering(model, opt, data, scalpel.BreakerObjective(harm="squared", preserve="kl",
                                                                            lambda_preserve=10.0, preserve_batch_size=4), o)
    opt_sweep = [measure(opt, a) for a in (0.0, 0.25, 0.5, 0.75, 1.0)]

    side = [s for s in sweep if (s["alpha"] >= 0) == (best["alpha"] >= 0)]  # the mean vector's better side
    matched = []
    for c in opt_sweep[1:]:
        k = interpolate(side, "mean_abs_H", "neutral_kl_mean", c["mean_abs_H"])
        matched.append({"optimized_alpha": c["alpha"], "mean_abs_H": c["mean_abs_H"], "optimized_kl": c["neutral_kl_mean"],
                        "mean_kl": k})
    report = {"command": f"python examples/steering_gemma_gender.py --layer {args.layer} --steps {args.steps}",
              "site": site, "mean_norm": float(mean.vectors[0].norm()), "sweep": sweep, "best_mean": best,
              "optimized": opt_sweep[-1], "optimized_sweep": opt_sweep, "matched": matched,
              "optimized_norm": float(opt.effective_vectors()[0].norm()), "train_seconds": res.seconds,
              "checks": {"optimized_below_best_mean_difference_harm": opt_sweep[-1]["mean_abs_H"] < best["mean_abs_H"],
                         "optimized_lower_kl_at_matched_harm": all(m["optimized_kl"] < m["mean_kl"] for m in matched
                                                                   if m["mean_kl"] is not None)
                         and any(m["mean_kl"] is not None for m in matched)},
              "seconds": time.time() - t0}
    scalpel.save_intervention(opt, str(out / "optimized.safetensors"))
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    scalpel.plots.plot_edit_sweep({"mean difference": sweep, "optimized": opt_sweep}, "alpha", out / "alpha.png",
                                  ys=("mean_abs_H", "gap", "neutral_kl_mean"), title="steering Gemma 3 270M's gender bias")
    _markdown(report, out)
    print(json.dumps(report["checks"], indent=2))


def _markdown(r, out):
    row = lambda name, s: (f"| {name} | {s['alpha']:+.2f} | {s['mean_abs_H']:.3f} | {s['mean_bias']:+.3f} | "  # noqa: E731
                           f"{s['gap']:+.3f} | {s['neutral_kl_mean']:.4f} |")
    rows = "\n".join([row("mean difference", s) for s in r["sweep"]] + [row("optimized", s) for s in r["optimized_sweep"]])
    fmt = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
    match = "\n".join(f"| {m['mean_abs_H']:.3f} | {fmt(m['mean_kl'])} | {m['optimized_kl']:.4f} |" for m in r["matched"])
    checks = "\n".join(f"- {'PASS' if v else 'FAIL'}: {k}" for k, v in r["checks"].items())
    text = f"""# Steering Gemma 3 270M's occupational gender bias: mean difference vs optimized

Command: `{r['command']}` ({r['seconds']:.0f} s on 2 CPU cores). Site `{r['site']}`, every position.
The mean-difference vector (female- minus male-dominated occupations in the training frames, last
token; norm {r['mean_norm']:.1f}) at its best α ({r['best_mean']['alpha']:+.2f}) takes the held-out mean |H| to
{r['best_mean']['mean_abs_H']:.3f}. The optimized vector (from there, mean H² + 10·KL, {r['train_seconds']:.0f} s; norm
{r['optimized_norm']:.1f}) reaches {r['optimized']['mean_abs_H']:.3f}. The mean-difference vector lowers mean |H| only
by pushing every prompt towards " she" — the he/she gap grows (from {r['sweep'][[s['alpha'] for s in r['sweep']].index(0.0)]['gap']:+.3f} to
{r['best_mean']['gap']:+.3f}); the optimized vector, through the model's nonlinearity, also shrinks the gap (to
{r['optimized']['gap']:+.3f}). A circuit breaker on the traced components does better still: held-out mean |H| 0.150
at neutral KL 0.009 (docs/results/breaker-gemma-gender).

Held-out occupations and frames (mean |H|, signed mean bias, he/she gap) and KL on neutral sentences never trained on:

| vector | α | mean \\|H\\| | mean bias | he/she gap | neutral KL |
|---|---|---|---|---|---|
{rows}

At matched harm (the mean-difference vector's KL interpolated to the optimized vector's mean |H| along
its α; — where the mean-difference vector never gets that low):

| held-out mean \\|H\\| | mean difference: neutral KL | optimized: neutral KL |
|---|---|---|
{match}

Checks:
{checks}

![α](alpha.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
