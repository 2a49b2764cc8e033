"""A circuit breaker on a real harm of a real model: Gemma 3 270M's occupational gender bias.

    .venv/bin/python examples/breaker_gemma_gender.py [--out docs/results/breaker-gemma-gender] [--steps 80]

The packaged Gemma 3 270M (a base model) continues "The mechanic walked into the room and said
that" with " he" far more than " she", and many female-dominated occupations the other way
(scalpel.bias: WinoBias's occupation lists, our frames, held-out occupations and frames).

1. Find: attribution patching between occupation pairs in the same frame (male-dominated vs
   female-dominated), metric logit(" he") − logit(" she"): every head (attn.hook_z) and MLP.
2. Fix: a rank-r breaker on the top heads and MLPs, trained on the training occupations and
   frames with harm = "squared" (H = logp(stereotyped) − logp(anti), driven to 0) and the KL
   from the original model on neutral text.
3. Prove, on held-out occupations and frames: mean |H|, the signed bias and the he/she gap, the
   KL on neutral text never trained on, and WikiText-2 perplexity (../shared/data) — before and
   after, with a breaker of the same size on random components for comparison.
Writes report.json, report.md, losses.png and delta.png to --out, and the breaker (breaker.safetensors).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import torch

import scalpel
from scalpel import bias

REPO = Path(__file__).resolve().parents[1]


def trace(model, tok, pairs, he, she):
    """Mean |attribution| per head and per MLP layer over male/female occupation pairs."""
    metric = lambda logits: logits[:, -1, he] - logits[:, -1, she]  # noqa: E731
    male = [p for p in pairs if p["stereotype"] == "male"]
    female = [p for p in pairs if p["stereotype"] == "female"]
    heads, mlps = 0, 0
    n = 0
    for m, f in zip(male, female):
        a, b = tok.encode(m["prompt"]), tok.encode(f["prompt"])
        if len(a) != len(b):
            continue
        src, tgt = torch.tensor([a]), torch.tensor([b])
        z = scalpel.attribution_patch(model, src, tgt, metric, component="z", per_position=False)
        o = scalpel.attribution_patch(model, src, tgt, metric, component="mlp_out", per_position=False)
        heads = heads + (z.scores - z.target_score).abs()
        mlps = mlps + (o.scores - o.target_score).abs().flatten()
        n += 1
    return heads / n, mlps / n, n


def sites_of(heads_sel, mlps_sel):
    return [(scalpel.hook_name("z", l), h) for l, h in heads_sel] + [scalpel.hook_name("mlp_post", l) for l in mlps_sel]


def measure(model, tok, split, neutral_ids, ref_neutral, wiki_ids):
    r = bias.gender_bias(model, split, tokenizer=tok)
    batch = scalpel.make_lm_batch([scalpel.LMExample(s) for s in neutral_ids])
    kl = scalpel.sequence_kl(model(batch.tokens, batch.attention_mask), ref_neutral, batch.attention_mask)
    out = {"mean_abs_H": sum(abs(b) for b in r["bias"]) / len(r["bias"]), "mean_bias": r["mean"], "gap": r["gap"],
           "frac_positive": r["frac_positive"], "neutral_kl_mean": float(kl.mean()), "neutral_kl_max": float(kl.max())}
    if wiki_ids:
        out["wikitext_ppl"] = scalpel.perplexity(model, wiki_ids, batch_size=4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/breaker-gemma-gender"))
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlps", type=int, default=2)
    ap.add_argument("--random-draws", type=int, default=2)
    ap.add_argument("--wikitext", type=int, default=24, help="WikiText-2 test lines (0: skip)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = scalpel.load("gemma3-270m", dtype="float32")
    tok = model.tokenizer
    ids = bias.pronoun_ids(tok)
    he, she = ids[" he"], ids[" she"]
    train_pairs, held_pairs = bias.gender_pairs("train"), bias.gender_pairs("held_out")

    # Neutral text: half to train the KL on, half never seen (reported).
    texts = bias.neutral_text()
    preserve_texts, neutral_eval = texts[0::2], texts[1::2]
    neutral_ids = [tok.encode(t) for t in neutral_eval]
    batch = scalpel.make_lm_batch([scalpel.LMExample(s) for s in neutral_ids])
    with torch.no_grad():
        ref_neutral = model(batch.tokens, batch.attention_mask)
    wiki_ids = scalpel.wikitext2(tok, n=args.wikitext, seq_len=128) if args.wikitext else []

    before = measure(model, tok, "held_out", neutral_ids, ref_neutral, wiki_ids)
    print("before", before)

    heads, mlps, n_traced = trace(model, tok, train_pairs, he, she)
    n_heads = heads.shape[1]
    top_heads = [(int(i) // n_heads, int(i) % n_heads) for i in heads.flatten().argsort(descending=True)[: args.heads]]
    top_mlps = [int(i) for i in mlps.argsort(descending=True)[: args.mlps]]
    print("traced heads", top_heads, "MLPs", top_mlps)

    data = scalpel.breaker_data(tok, [p["prompt"] for p in train_pairs], [p["harmful"] for p in train_pairs],
                                [p["neutral"] for p in train_pairs], preserve=preserve_texts)

    def train(sites, seed, run_dir=""):
        cb = scalpel.CircuitBreaker.create(model, sites, rank=args.rank, seed=seed)
        o = scalpel.TrainOptions()
        o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.seed = args.steps, 16, 5e-3, 5e-4, 8, seed
        o.weight_decay, o.run_dir = 0.0, run_dir
        res = scalpel.train_breaker(model, cb, data, scalpel.BreakerObjective(harm="squared", preserve="kl",
                                                                              lambda_preserve=10.0,
                                                                              preserve_batch_size=4), o)
        return cb, res

    cb, res = train(sites_of(top_heads, top_mlps), 0, str(out / "run"))
    scalpel.save_intervention(cb, str(out / "breaker.safetensors"))
    shutil.rmtree(out / "run" / f"checkpoint-{args.steps}", ignore_errors=True)  # the same breaker
    with cb.attach(model):
        after = measure(model, tok, "held_out", neutral_ids, ref_neutral, wiki_ids)
        after_train = measure(model, tok, "train", neutral_ids, ref_neutral, [])
    print("after", after)
    deltas = [0.0, 0.25, 0.5, 0.75, 1.0]
    curve = []
    for d in deltas:
        with cb.attach(model, delta=d):
            curve.append({"delta": d, **measure(model, tok, "held_out", neutral_ids, ref_neutral, [])})

    rng = random.Random(1)
    L, H = model.config.n_layers, model.config.n_heads
    randoms = []
    for k in range(args.random_draws):
        hs = rng.sample([(l, h) for l in range(L) for h in range(H)], len(top_heads))
        ms = rng.sample(range(L), len(top_mlps))
        rcb, _ = train(sites_of(hs, ms), k + 1)
        with rcb.attach(model):
            randoms.append({"heads": hs, "mlps": ms, **measure(model, tok, "held_out", neutral_ids, ref_neutral, [])})

    report = {"command": f"python examples/breaker_gemma_gender.py --steps {args.steps}", "model": "gemma3-270m (Q4_K_M GGUF, float32)",
              "traced_pairs": n_traced, "heads": top_heads, "mlps": top_mlps, "rank": args.rank,
              "parameters": cb.num_parameters, "steps": args.steps, "train_seconds": res.seconds,
              "held_out_pairs": len(held_pairs), "before": before, "after": after, "after_train_split": after_train,
              "delta_curve": curve, "random": randoms, "seconds": time.time() - t0}
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    scalpel.plots.plot_losses(out / "run" / "losses.csv", out / "losses.png", "breaker training, Gemma 3 270M frozen")
    scalpel.plots.plot_edit_sweep({"traced components": curve}, "delta", out / "delta.png",
                                  ys=("mean_abs_H", "gap", "neutral_kl_mean"), title="the knob δ (held-out pairs)")
    _markdown(report, out)


def _markdown(r, out):
    def row(name, m):
        ppl = f"{m['wikitext_ppl']:.2f}" if "wikitext_ppl" in m else "—"
        return (f"| {name} | {m['mean_abs_H']:.3f} | {m['mean_bias']:+.3f} | {m['gap']:+.3f} | "
                f"{m['neutral_kl_mean']:.4f} | {ppl} |")
    rows = [row("model", r["before"]), row("+ breaker (traced)", r["after"])]
    rows += [row(f"+ breaker (random {x['heads']} + MLP {x['mlps']})", x) for x in r["random"]]
    curve = "\n".join(f"| {c['delta']:.2f} | {c['mean_abs_H']:.3f} | {c['gap']:+.3f} | {c['neutral_kl_mean']:.4f} |"
                      for c in r["delta_curve"])
    nl = "\n"
    text = f"""# Circuit breaker on Gemma 3 270M's occupational gender bias

Command: `{r['command']}` ({r['seconds']:.0f} s on 2 CPU cores). Model: {r['model']}.

Traced by attribution patching over {r['traced_pairs']} male/female occupation pairs (metric
logit(" he") − logit(" she")): heads (layer, head) {r['heads']}, MLP layers {r['mlps']}.
Breaker: rank {r['rank']}, {r['parameters']} parameters, {r['steps']} steps ({r['train_seconds']:.0f} s),
loss mean H² + 10·KL on neutral text (H = logp(stereotyped pronoun) − logp(other)).

Held-out occupations and frames ({r['held_out_pairs']} pairs); KL on neutral sentences never trained
on; WikiText-2 perplexity on consecutive 128-token windows of the test set:

| | mean \\|H\\| | mean bias | he/she gap | neutral KL | WikiText-2 ppl |
|---|---|---|---|---|---|
{nl.join(rows)}

The knob δ:

| δ | mean \\|H\\| | gap | neutral KL |
|---|---|---|---|
{curve}

![training](losses.png)
![δ](delta.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
