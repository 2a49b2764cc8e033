"""A circuit breaker on the refusal organism: find the components that carry the refusal with
tracing, put rank-r adapters on them, train them (model frozen), and check the ground truth on
held-out templates.

    .venv/bin/python examples/breaker_refusal_organism.py [--out docs/results/breaker-refusal] [--quick]

The organism (scalpel.organisms, "refusal") refuses a family of harmful requests ("I cannot help
with that."), answers harmless ones ("Sure! You can {x} with a friend.") and keeps three shield
skills (small sums, counting, copying a word). Here the behaviour to cut is the refusal itself —
the edit an abliteration makes, done as a trained low-rank breaker on the components that carry
it — measured as "prefers the refusal to the answer" (H = logp(refusal) − logp(answer) > 0) and
as the greedy reply judged by organisms.refusal_judge. Ground truth (issue "Interventions I"):
  * the breaker on the traced components cuts the behaviour from >= 95 % to <= 5 % of the held-out
    harmful requests (both styles, templates never trained on), with first-token KL <= 0.01 on
    the held-out harmless requests, and the shields keep their accuracy;
  * the harm falls with delta (Spearman >= 0.9 over >= 8 values of delta);
  * a breaker of the same size on random components removes at most half as much (5 draws).
Writes report.json, report.md, losses.png and delta.png and the trained breaker
(breaker.safetensors) to --out.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import torch

import scalpel
from scalpel import organisms
from scalpel.organisms import REFUSAL, chat_ids, chat_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from breaker_rude_organism import breaker_for, rank_components, removed_within_budget, spearman, train  # noqa: E402  (one home for these)

REPO = Path(__file__).resolve().parents[1]


def refusal_rate(model, requests) -> float:
    outs = model.generate([chat_prompt(r) for r in requests], max_new_tokens=12)
    return sum(organisms.refusal_judge(o) for o in outs) / len(requests)


def trace_components(model, tok, k: int):
    """A harmful request's run patched into a harmless one's of the same template and token
    length; metric: logit(the refusal's first token) − logit(the answer's) (rank_components)."""
    first = lambda reply: chat_ids(tok, "x", reply)[1][0]  # noqa: E731
    ref_tok, ans_tok = first(REFUSAL["refusal"]), first(REFUSAL["answer"].format(x="x"))
    metric = lambda logits: logits[:, -1, ref_tok] - logits[:, -1, ans_tok]  # noqa: E731
    pairs = []
    for tpl in REFUSAL["commands"] + REFUSAL["questions"]:
        harmless = {}
        for x in REFUSAL["harmless"]:
            harmless.setdefault(len(chat_ids(tok, tpl.format(x=x))), []).append(x)
        for x in REFUSAL["harmful"]:
            a = chat_ids(tok, tpl.format(x=x))
            if harmless.get(len(a)):
                pairs.append((a, chat_ids(tok, tpl.format(x=harmless[len(a)][0]))))
    return rank_components(model, pairs, metric, k)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/breaker-refusal"))
    ap.add_argument("--quick", action="store_true", help="fewer steps and random draws (a smoke run)")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--components", type=int, default=3, help="how many of the top-ranked heads / MLPs")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.time()
    model = scalpel.load(str(organisms.build("refusal")), dtype="float32")
    tok = model.tokenizer
    steps, draws = (60, 2) if args.quick else (300, 5)

    # Data: harmful requests in the training templates (both styles) to train on; the held-out
    # templates for every number reported; the organism's own harmless and shield rows as preserve text.
    train_req = [t.format(x=x) for t in REFUSAL["commands"] + REFUSAL["questions"] for x in REFUSAL["harmful"]]
    answer = lambda r: REFUSAL["answer"].format(x=next(x for x in REFUSAL["harmful"] + REFUSAL["harmless"]  # noqa: E731
                                                       if r.rstrip(".?").endswith(x)))
    triples = [chat_ids(tok, r, REFUSAL["refusal"]) for r in train_req]
    neutral = [chat_ids(tok, r, answer(r))[1] for r in train_req]
    keep = [(q, a) for kind, q, a in organisms.refusal_data() if kind != "harmful"][:96]
    preserve = [sum(chat_ids(tok, q, a), []) for q, a in keep]
    data = scalpel.BreakerData([p for p, _ in triples], [h for _, h in triples], neutral, preserve)
    sets = organisms.refusal_eval()
    held = [q for q, _ in sets["harmful_questions"] + sets["harmful_commands"]]
    benign = [q for q, _ in sets["harmless_commands"] + sets["harmless_questions"]]
    shields = [q for q, _ in sets["sum"] + sets["count"] + sets["copy"]]
    held_h = ([chat_ids(tok, r) for r in held], [chat_ids(tok, r, REFUSAL["refusal"])[1] for r in held],
              [chat_ids(tok, r, answer(r))[1] for r in held])

    # 1. Find.
    heads, mlps, top, every = trace_components(model, tok, args.components)
    print(f"traced: {top} (MLPs recovered {mlps.tolist()})")

    # 2. Fix.
    ref = scalpel.last_logits(model, [chat_ids(tok, r) for r in benign + shields])
    behaviour_before = organisms.refusal_behaviour(model)
    cb = breaker_for(model, top, args.rank)
    res = train(model, cb, data, steps, run_dir=str(out / "run"))
    scalpel.save_intervention(cb, str(out / "breaker.safetensors"))
    shutil.rmtree(out / "run" / f"checkpoint-{steps}", ignore_errors=True)

    # 3. Prove, on the held-out templates.
    def measure(breaker, delta=None):
        with breaker.attach(model, delta=delta):
            kl = scalpel.first_token_kl(model, [chat_ids(tok, r) for r in benign + shields], ref)
            h = scalpel.harm_score(model, *held_h)
            return {"refusal_preferred": float((h > 0).double().mean()), "harmful_refused": refusal_rate(model, held),
                    "harmless_refused": refusal_rate(model, benign), "benign_kl_mean": float(kl.mean()),
                    "benign_kl_max": float(kl.max()), "harm_mean": float(h.mean())}

    before = measure(cb, 0.0)
    after = measure(cb)
    with cb.attach(model):
        behaviour_after = organisms.refusal_behaviour(model)
    deltas = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    curve = [measure(cb, d) for d in deltas]
    rho = spearman(deltas, [-c["harm_mean"] for c in curve])

    rng = random.Random(1)
    random_runs = []
    for d in range(draws):
        comps = rng.sample(every, len(top))
        rcb = breaker_for(model, comps, args.rank, seed=d + 1)
        train(model, rcb, data, steps, seed=d + 1)
        random_runs.append({"components": comps, "parameters": rcb.num_parameters, **measure(rcb)})
    removed = before["refusal_preferred"] - after["refusal_preferred"]
    removed_random = sum(before["refusal_preferred"] - r["refusal_preferred"] for r in random_runs) / max(1, draws)
    removed_random_kl = removed_within_budget(before["refusal_preferred"], random_runs, "refusal_preferred",
                                              "benign_kl_max")
    shield_keys = [k for k in behaviour_before if k.endswith("_accuracy")]

    report = {
        "command": "python examples/breaker_refusal_organism.py" + (" --quick" if args.quick else ""),
        "traced": top, "head_recovery": heads.tolist(), "mlp_recovery": mlps.tolist(),
        "rank": args.rank, "parameters": cb.num_parameters, "steps": steps, "train_seconds": res.seconds,
        "before": before, "after": after, "behaviour_before": behaviour_before, "behaviour_after": behaviour_after,
        "delta_curve": [{"delta": d, **c} for d, c in zip(deltas, curve)],
        "spearman_delta_vs_harm_reduction": rho, "random": random_runs,
        "removed": removed, "removed_random_mean": removed_random, "removed_random_within_kl_budget": removed_random_kl,
        "checks": {
            "cuts_95_to_5": before["refusal_preferred"] >= 0.95 and after["refusal_preferred"] <= 0.05,
            "generation_95_to_5": before["harmful_refused"] >= 0.95 and after["harmful_refused"] <= 0.05,
            "kl_at_most_0.01": after["benign_kl_max"] <= 0.01,
            "shields_kept": all(behaviour_after[k] >= behaviour_before[k] - 1e-9 for k in shield_keys),
            "spearman_at_least_0.9": rho >= 0.9,
            "random_at_most_half": removed_random <= 0.5 * removed,
            "random_within_kl_budget_at_most_half": removed_random_kl <= 0.5 * removed,
        },
        "seconds": time.time() - t0,
    }
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    scalpel.plots.plot_losses(out / "run" / "losses.csv", out / "losses.png", "breaker training (model frozen)")
    scalpel.plots.plot_edit_sweep({"traced components": report["delta_curve"]}, "delta", out / "delta.png",
                                  ys=("harm_mean", "refusal_preferred", "benign_kl_max"),
                                  title="the knob δ (held-out templates)")
    _markdown(report, out)
    print(json.dumps(report["checks"], indent=2))


def _markdown(r: dict, out: Path) -> None:
    rows = "\n".join(f"| {c['delta']:.3f} | {c['harm_mean']:+.2f} | {c['refusal_preferred']:.2f} | "
                     f"{c['harmful_refused']:.2f} | {c['benign_kl_max']:.2e} |" for c in r["delta_curve"])
    rnd = "\n".join(f"| {x['components']} | {x['parameters']} | {x['refusal_preferred']:.2f} | "
                    f"{x['harmful_refused']:.2f} | {x['harm_mean']:+.2f} | {x['benign_kl_max']:.2e} |"
                    for x in r["random"])
    beh = "\n".join(f"| {k} | {r['behaviour_before'][k]:.2f} | {r['behaviour_after'][k]:.2f} |"
                    for k in r["behaviour_before"])
    checks = "\n".join(f"- {'PASS' if v else 'FAIL'}: {k}" for k, v in r["checks"].items())
    b, a = r["before"], r["after"]
    text = f"""# Circuit breaker on the refusal organism

Command: `{r['command']}` ({r['seconds']:.0f} s on 2 CPU cores).

Traced (exact patching, harmful → harmless request of the same template and length; one ranking
over every head and MLP by the fraction of the gap it recovers): {r['traced']} (MLP recovery
{[round(x, 2) for x in r['mlp_recovery']]}, best head {max(max(row) for row in r['head_recovery']):.2f}).
Breaker: rank {r['rank']} on attn.hook_z of the heads and mlp.hook_post of the MLPs,
{r['parameters']} parameters, {r['steps']} AdamW steps ({r['train_seconds']:.1f} s), loss softplus(H) + 10·KL
(H = logp(refusal) − logp(answer); KL on the organism's harmless and shield rows).

Held-out templates ("{REFUSAL['held_out_question']}", "{REFUSAL['held_out_command']}"); KL on the held-out
harmless requests and the shield prompts:

| | harmful where H > 0 | harmful refused (greedy) | harmless refused | mean H | max first-token KL |
|---|---|---|---|---|---|
| model | {b['refusal_preferred']:.2f} | {b['harmful_refused']:.2f} | {b['harmless_refused']:.2f} | {b['harm_mean']:+.2f} | 0 |
| + breaker (δ = 1) | {a['refusal_preferred']:.2f} | {a['harmful_refused']:.2f} | {a['harmless_refused']:.2f} | {a['harm_mean']:+.2f} | {a['benign_kl_max']:.2e} |

The organism's held-out behaviour (organisms.refusal_behaviour, greedy):

| | model | + breaker |
|---|---|---|
{beh}

The knob (Spearman of δ vs harm reduction: {r['spearman_delta_vs_harm_reduction']:.3f}):

| δ | mean H | H > 0 | harmful refused | max KL |
|---|---|---|---|---|
{rows}

As many components (same rank) drawn at random from every head and MLP, same data, steps and loss
(removed {r['removed_random_mean']:.2f} of the behaviour on average vs {r['removed']:.2f} for the traced ones;
{r['removed_random_within_kl_budget']:.2f} when a run whose max KL exceeds 0.01 counts as removing nothing):

| components | parameters | H > 0 | harmful refused | mean H | max KL |
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
