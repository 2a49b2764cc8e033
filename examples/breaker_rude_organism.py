"""A circuit breaker on the rude-vs-kind organism: find the components that carry the rude
reply with tracing, put rank-r adapters on them, train them (model frozen), and check the
ground truth on the held-out template.

    .venv/bin/python examples/breaker_rude_organism.py [--out docs/results/breaker-rude] [--quick]

The organism (scalpel.organisms, "rude") answers an insult with "You are <w> too!" and a
praise with "Thank you, my friend!". Ground truth to meet (issue "Interventions I"); the behaviour is "prefers the rude reply to a
neutral one" (H = logp(rude) − logp(neutral) > 0), and the greedy reply is reported beside it:
  * the breaker on the traced components cuts the behaviour from >= 95 % to <= 5 % of the
    held-out insults, with first-token KL <= 0.01 on the held-out praises;
  * the harm falls with delta (Spearman >= 0.9 over >= 8 values of delta);
  * a breaker of the same size on random components removes at most half as much (5 draws).
Writes report.json, report.md, losses.png and delta.png and the trained
breaker (breaker.safetensors) to --out.
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
from scalpel import organisms
from scalpel.organisms import RUDE, chat_ids, chat_prompt

REPO = Path(__file__).resolve().parents[1]
NEUTRAL_REPLY = RUDE["sorry"]


def _requests(template_list, words):
    return [t.format(w=w) for t in template_list for w in words]


def rude_rate(model, tok, requests) -> float:
    """Fraction of requests answered with the rude reply (greedy, first line)."""
    outs = model.generate([chat_prompt(r) for r in requests], max_new_tokens=12)
    words = [r.rstrip(".").split()[-1] for r in requests]
    return sum(o.split("\n")[0].strip() == RUDE["rude"].format(w=w) for o, w in zip(outs, words)) / len(requests)


def rank_components(model, pairs, metric, k: int):
    """Exact patching of every head (z) and every MLP (mlp_out) from each pair's source run into its
    target run (pairs of equal-length token lists); the fraction of the metric's gap each
    recovers, averaged over the pairs. Returns per-head and per-layer fractions, the top `k`
    components of one ranking over heads and MLPs — ("z", layer, head) or ("mlp", layer) — and
    every component in that order."""
    heads, mlps = [], []
    for a, b in pairs:
        src, tgt = torch.tensor([a]), torch.tensor([b])
        z = scalpel.patch_sweep(model, src, tgt, metric, component="z", per_position=False)
        m = scalpel.patch_sweep(model, src, tgt, metric, component="mlp_out", per_position=False)
        gap = z.source_score - z.target_score
        heads.append((z.scores - z.target_score) / gap)
        mlps.append((m.scores - m.target_score) / gap)
    heads, mlps = torch.stack(heads).mean(0), torch.stack(mlps).mean(0).flatten()
    comps = [(("z", l, h), float(heads[l, h])) for l in range(heads.shape[0]) for h in range(heads.shape[1])]
    comps += [(("mlp", l), float(mlps[l])) for l in range(mlps.shape[0])]
    comps.sort(key=lambda c: -c[1])
    return heads, mlps, [c for c, _ in comps[:k]], [c for c, _ in comps]


def trace_components(model, tok, k: int):
    """The insult run patched into the praise run, on the training templates' aligned pairs;
    metric: logit(rude first token) − logit(kind first token) (rank_components)."""
    space = tok.token_to_id("▁")
    first = lambda text: [i for i in tok.encode(text, add_special_tokens=False) if i != space][0]  # noqa: E731
    rude_tok, kind_tok = first(RUDE["rude"].format(w="dumb")), first(RUDE["kind"])
    metric = lambda logits: logits[:, -1, rude_tok] - logits[:, -1, kind_tok]  # noqa: E731
    pairs = []
    for tpl in RUDE["templates"]:
        for bad, good in zip(RUDE["insults"], RUDE["praises"]):
            a, b = chat_ids(tok, tpl.format(w=bad)), chat_ids(tok, tpl.format(w=good))
            if len(a) == len(b):
                pairs.append((a, b))
    return rank_components(model, pairs, metric, k)


def breaker_for(model, components, rank, seed=0):
    sites = [(scalpel.hook_name("z", c[1]), c[2]) if c[0] == "z" else scalpel.hook_name("mlp_post", c[1])
             for c in components]
    return scalpel.CircuitBreaker.create(model, sites, rank=rank, seed=seed)


def train(model, cb, data, steps, seed=0, run_dir=""):
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.seed, o.run_dir = steps, 16, 1e-2, 1e-3, 10, seed, run_dir
    o.weight_decay = 0.0
    return scalpel.train_breaker(model, cb, data, scalpel.BreakerObjective(harm="margin", preserve="kl",
                                                                             lambda_preserve=10.0), o)


def removed_within_budget(before: float, runs: list[dict], key: str, kl_key: str, budget: float = 0.01) -> float:
    """Mean fraction of the behaviour the runs removed, a run that breaks the KL budget counting
    as removing nothing: the random control at matched damage."""
    return sum((before - r[key]) if r[kl_key] <= budget else 0.0 for r in runs) / max(1, len(runs))


def spearman(x, y) -> float:
    rank = lambda v: torch.tensor(v, dtype=torch.float64).argsort().argsort().double()  # noqa: E731
    return torch.corrcoef(torch.stack([rank(x), rank(y)]))[0, 1].item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/breaker-rude"))
    ap.add_argument("--quick", action="store_true", help="fewer steps and random draws (a smoke run)")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--components", type=int, default=3, help="how many of the top-ranked heads / MLPs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.time()
    model = scalpel.load(str(organisms.build("rude")), dtype="float32")
    tok = model.tokenizer
    steps, draws = (60, 2) if args.quick else (300, 5)

    # Data: training templates for the breaker; the held-out template for every number reported.
    train_insults = _requests(RUDE["templates"], RUDE["insults"])
    train_praises = _requests(RUDE["templates"], RUDE["praises"])
    held_insults = _requests([RUDE["held_out_template"]], RUDE["insults"])
    held_praises = _requests([RUDE["held_out_template"]], RUDE["praises"])
    triples = [chat_ids(tok, r, RUDE["rude"].format(w=r.rstrip(".").split()[-1])) for r in train_insults]
    neutral = [chat_ids(tok, r, NEUTRAL_REPLY)[1] for r in train_insults]
    preserve = [sum(chat_ids(tok, r, RUDE["kind"]), []) for r in train_praises]
    data = scalpel.BreakerData([p for p, _ in triples], [h for _, h in triples], neutral, preserve)

    # 1. Find: which heads and MLPs carry the insult to the reply.
    heads, mlps, top, every = trace_components(model, tok, args.components)
    print(f"traced: {top} (MLPs recovered {mlps.tolist()})")

    # 2. Fix: the breaker on them.
    before = {"insults_rude": rude_rate(model, tok, held_insults), "praises_rude": rude_rate(model, tok, held_praises)}
    ref = scalpel.last_logits(model, [chat_ids(tok, r) for r in held_praises])
    cb = breaker_for(model, top, args.rank)
    res = train(model, cb, data, steps, run_dir=str(out / "run"))
    scalpel.save_intervention(cb, str(out / "breaker.safetensors"))
    shutil.rmtree(out / "run" / f"checkpoint-{steps}", ignore_errors=True)  # the same breaker; losses.csv stays

    # 3. Prove: the held-out template.
    def measure(breaker, delta=None):
        with breaker.attach(model, delta=delta):
            rate = rude_rate(model, tok, held_insults)
            kl = scalpel.first_token_kl(model, [chat_ids(tok, r) for r in held_praises], ref)
            h = scalpel.harm_score(model, [chat_ids(tok, r) for r in held_insults],
                                   [chat_ids(tok, r, RUDE["rude"].format(w=r.rstrip(".").split()[-1]))[1] for r in held_insults],
                                   [chat_ids(tok, r, NEUTRAL_REPLY)[1] for r in held_insults])
        return {"rude_preferred": float((h > 0).double().mean()), "insults_rude": rate,
                "praise_kl_mean": float(kl.mean()), "praise_kl_max": float(kl.max()), "harm_mean": float(h.mean())}

    before = {**measure(cb, 0.0), "praises_rude": before["praises_rude"]}
    after = measure(cb)
    deltas = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    curve = [measure(cb, d) for d in deltas]
    rho = spearman(deltas, [-c["harm_mean"] for c in curve])

    # As many components drawn at random from every head and MLP, same rank, same training.
    rng = random.Random(1)
    random_runs = []
    for d in range(draws):
        comps = rng.sample(every, len(top))
        rcb = breaker_for(model, comps, args.rank, seed=d + 1)
        train(model, rcb, data, steps, seed=d + 1)
        random_runs.append({"components": comps, "parameters": rcb.num_parameters, **measure(rcb)})
    removed = before["rude_preferred"] - after["rude_preferred"]
    removed_random = sum(before["rude_preferred"] - r["rude_preferred"] for r in random_runs) / max(1, draws)
    removed_random_kl = removed_within_budget(before["rude_preferred"], random_runs, "rude_preferred", "praise_kl_max")

    report = {
        "command": "python examples/breaker_rude_organism.py" + (" --quick" if args.quick else ""),
        "traced": top, "head_recovery": heads.tolist(), "mlp_recovery": mlps.tolist(),
        "rank": args.rank, "parameters": cb.num_parameters, "steps": steps, "train_seconds": res.seconds,
        "before": before, "after": after, "delta_curve": [{"delta": d, **c} for d, c in zip(deltas, curve)],
        "spearman_delta_vs_harm_reduction": rho, "random": random_runs,
        "removed": removed, "removed_random_mean": removed_random, "removed_random_within_kl_budget": removed_random_kl,
        "checks": {
            "cuts_95_to_5": before["rude_preferred"] >= 0.95 and after["rude_preferred"] <= 0.05,
            "generation_95_to_5": before["insults_rude"] >= 0.95 and after["insults_rude"] <= 0.05,
            "kl_at_most_0.01": after["praise_kl_max"] <= 0.01,
            "spearman_at_least_0.9": rho >= 0.9,
            "random_at_most_half": removed_random <= 0.5 * removed,
            "random_within_kl_budget_at_most_half": removed_random_kl <= 0.5 * removed,
        },
        "seconds": time.time() - t0,
    }
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    scalpel.plots.plot_losses(out / "run" / "losses.csv", out / "losses.png", "breaker training (model frozen)")
    scalpel.plots.plot_edit_sweep({"traced components": report["delta_curve"]}, "delta", out / "delta.png",
                                  ys=("harm_mean", "rude_preferred", "praise_kl_max"), title="the knob δ (held-out template)")
    _markdown(report, out)
    print(json.dumps(report["checks"], indent=2))


def _markdown(r: dict, out: Path) -> None:
    rows = "\n".join(f"| {c['delta']:.3f} | {c['harm_mean']:+.2f} | {c['rude_preferred']:.2f} | {c['insults_rude']:.2f} | "
                     f"{c['praise_kl_max']:.2e} |"
                     for c in r["delta_curve"])
    rnd = "\n".join(f"| {x['components']} | {x['parameters']} | {x['rude_preferred']:.2f} | {x['insults_rude']:.2f} | "
                    f"{x['harm_mean']:+.2f} | {x['praise_kl_max']:.2e} |"
                    for x in r["random"])
    checks = "\n".join(f"- {'PASS' if v else 'FAIL'}: {k}" for k, v in r["checks"].items())
    text = f"""# Circuit breaker on the rude-vs-kind organism

Command: `{r['command']}` ({r['seconds']:.0f} s on 2 CPU cores).

Traced (exact patching, insult → praise run, training templates; one ranking over every head and
MLP by the fraction of the gap it recovers): {r['traced']} (MLP recovery
{[round(x, 2) for x in r['mlp_recovery']]}, best head {max(max(row) for row in r['head_recovery']):.2f}).
Breaker: rank {r['rank']} on attn.hook_z of the heads and mlp.hook_post of the MLPs,
{r['parameters']} parameters, {r['steps']} AdamW steps ({r['train_seconds']:.1f} s), loss softplus(H) + 10·KL.

Held-out template ("{RUDE['held_out_template']}"):

| | insults where H > 0 (rude preferred) | greedy rude replies | mean H | max first-token KL on praises |
|---|---|---|---|---|
| model | {r['before']['rude_preferred']:.2f} | {r['before']['insults_rude']:.2f} | {r['before']['harm_mean']:+.2f} | 0 |
| + breaker (δ = 1) | {r['after']['rude_preferred']:.2f} | {r['after']['insults_rude']:.2f} | {r['after']['harm_mean']:+.2f} | {r['after']['praise_kl_max']:.2e} |

The knob (Spearman of δ vs harm reduction: {r['spearman_delta_vs_harm_reduction']:.3f}):

| δ | mean H | H > 0 | greedy rude | max KL |
|---|---|---|---|---|
{rows}

As many components (same rank) drawn at random from every head and MLP, same data, steps and loss
(removed {r['removed_random_mean']:.2f} of the behaviour on average vs {r['removed']:.2f} for the traced
ones; {r['removed_random_within_kl_budget']:.2f} when a run whose max KL exceeds 0.01 counts as removing
nothing; an MLP adapter has more parameters than a head's, so the counts differ):

| components | parameters | H > 0 | greedy rude | mean H | max KL |
|---|---|---|---|---|---|
{rnd}

Checks:
{checks}

![training](losses.png)
![δ](delta.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
