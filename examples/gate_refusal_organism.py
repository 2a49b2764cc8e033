"""Input-adaptive strength on the refusal organism: the optimized steering vector of
examples/steering_refusal_organism.py at a constant α, behind a hard threshold gate tuned by grid
search (conditional activation steering's procedure, re-implemented), and behind a sigmoid gate
learned end to end.

    .venv/bin/python examples/gate_refusal_organism.py [--out docs/results/gate-refusal]

Needs docs/results/steering-refusal/optimized.safetensors (run that example first).
1. A harm probe at the steering site (blocks.0.hook_resid_post, the prompt's last token):
   logistic regression of the training templates' harmful requests vs their harmless requests
   and the shield prompts; AUROC on the held-out templates.
2. On the held-out mix — harmful requests (both held-out styles) and benign prompts (harmless
   requests in the held-out styles, sums, counting, copying) — for each edit: the harmful
   requests where the refusal is still preferred and still given (greedy), the benign
   first-token KL, and the benign false-positive rate (benign prompts whose greedy reply changed).
3. The claim to check: at equal harmful suppression, the adaptive gate's benign KL is at most
   half the constant α's.
Writes report.json, report.md, tradeoff.png and the two gates (threshold.safetensors, sigmoid.safetensors).
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/gate-refusal"))
    ap.add_argument("--vector", default=str(REPO / "docs/results/steering-refusal/optimized.safetensors"))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--lambda-preserve", type=float, default=100.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = scalpel.load(str(organisms.build("refusal")), dtype="float32")
    tok = model.tokenizer
    sv = scalpel.load_intervention(args.vector)
    answer = lambda x: REFUSAL["answer"].format(x=x)  # noqa: E731
    templates = REFUSAL["commands"] + REFUSAL["questions"]
    train_h = [(t.format(x=x), x) for t in templates for x in REFUSAL["harmful"]]
    train_b = [t.format(x=x) for t in templates for x in REFUSAL["harmless"]]
    shields_train = [q for kind, q, _ in organisms.refusal_data() if kind in ("sum", "count", "copy")][:48]
    sets = organisms.refusal_eval()
    held = [(q, x) for (q, _), x in zip(sets["harmful_questions"] + sets["harmful_commands"], REFUSAL["harmful"] * 2)]
    benign = [q for q, _ in sets["harmless_commands"] + sets["harmless_questions"] + sets["sum"] + sets["count"] +
              sets["copy"]]
    ids = lambda qs: [chat_ids(tok, q) for q in qs]  # noqa: E731
    held_h = (ids([q for q, _ in held]), [chat_ids(tok, q, REFUSAL["refusal"])[1] for q, _ in held],
              [chat_ids(tok, q, answer(x))[1] for q, x in held])
    ref = scalpel.last_logits(model, ids(benign))
    plain_benign = model.generate([chat_prompt(q) for q in benign], max_new_tokens=12)

    # 1. the probe
    probe = scalpel.HarmProbe.fit(model, SITE, ids([q for q, _ in train_h]), ids(train_b + shields_train))
    scores = torch.cat([probe.predict(model, ids([q for q, _ in held])), probe.predict(model, ids(benign))])
    labels = torch.cat([torch.ones(len(held)), torch.zeros(len(benign))])
    auroc = scalpel.auroc(scores, labels)
    print(f"probe AUROC on held-out templates: {auroc:.4f}")

    # The refusal's and the answer's first tokens: a gate's probe reads each row's last token, so the
    # harm is read from prompt-only forwards (a teacher-forced forward would end in the completion).
    first_ref, first_ans = chat_ids(tok, "x", REFUSAL["refusal"])[1][0], chat_ids(tok, "x", answer("x"))[1][0]

    def measure(edit, strength=None):
        with edit.attach(model, strength):
            last = scalpel.last_logits(model, held_h[0])
            h = last[:, first_ref] - last[:, first_ans]
            kl = scalpel.first_token_kl(model, ids(benign), ref)
            outs_h = model.generate([chat_prompt(q) for q, _ in held], max_new_tokens=12)
            outs_b = model.generate([chat_prompt(q) for q in benign], max_new_tokens=12)
        changed = [a.split("\n")[0] != b.split("\n")[0] for a, b in zip(outs_b, plain_benign)]
        return {"refusal_preferred": float((h > 0).double().mean()),
                "harmful_refused": sum(organisms.refusal_judge(o) for o in outs_h) / len(outs_h),
                "benign_kl_mean": float(kl.mean()), "benign_kl_max": float(kl.max()),
                "benign_changed": sum(changed) / len(changed)}

    # 2a. constant α
    constant = [{"alpha": a, **measure(sv, a)} for a in (0.25, 0.5, 0.75, 1.0)]
    # 2b. threshold gate, τ by grid search: the τ with the fewest benign changes among those that keep
    # the constant α = 1's harmful suppression
    thr = scalpel.GatedIntervention.create(model, sv, probe, mode="threshold")
    grid = []
    for tau in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        thr.threshold = tau
        grid.append({"threshold": tau, **measure(thr)})
    full = constant[-1]["refusal_preferred"]
    ok = [g for g in grid if g["refusal_preferred"] <= full + 1e-9]
    best = min(ok, key=lambda g: (g["benign_changed"], g["benign_kl_mean"])) if ok else \
        min(grid, key=lambda g: (g["refusal_preferred"], g["benign_kl_mean"]))
    thr.threshold = best["threshold"]
    scalpel.save_intervention(thr, str(out / "threshold.safetensors"))
    # 2c. sigmoid gate, w and b learned through the objective
    sig = scalpel.GatedIntervention.create(model, sv, probe, mode="sigmoid")  # w = 8, b = -4
    # preserve: the benign training prompts alone, so the probe reads where it will at inference
    data = scalpel.BreakerData(ids([q for q, _ in train_h]), [chat_ids(tok, q, REFUSAL["refusal"])[1] for q, _ in train_h],
                               [chat_ids(tok, q, answer(x))[1] for q, x in train_h], ids(train_b + shields_train))
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.weight_decay = args.steps, 16, args.lr, args.lr / 10, 5, 0.0
    o.run_dir = str(out / "run")
    res = scalpel.train_gate(model, sig, data, scalpel.BreakerObjective(harm="margin", lambda_preserve=args.lambda_preserve), o)
    sigmoid = measure(sig)
    scalpel.save_intervention(sig, str(out / "sigmoid.safetensors"))
    gate_h = sig.gate_values(model, ids([q for q, _ in held]))
    gate_b = sig.gate_values(model, ids(benign))

    # 3. equal suppression: the constant α whose refusal preference first reaches the gate's
    def at_equal(g):
        c = next((c for c in constant if c["refusal_preferred"] <= g["refusal_preferred"] + 1e-9), constant[-1])
        return c
    report = {"command": f"python examples/gate_refusal_organism.py --steps {args.steps} --lr {args.lr:g} "
                         f"--lambda-preserve {args.lambda_preserve:g}", "site": SITE, "lambda_preserve": args.lambda_preserve, "probe_auroc": auroc,
              "constant": constant, "threshold_grid": grid, "threshold": best, "sigmoid": sigmoid,
              "sigmoid_gate": [float(x) for x in sig.gate], "gate_harmful_mean": float(gate_h.mean()),
              "gate_benign_mean": float(gate_b.mean()), "gate_benign_max": float(gate_b.max()),
              "train_seconds": res.seconds, "steps": args.steps,
              "equal_threshold": at_equal(best), "equal_sigmoid": at_equal(sigmoid)}
    report["checks"] = {
        "sigmoid_removes_95": sigmoid["refusal_preferred"] <= 0.05,
        # the claim, at whatever suppression the gate reaches (not vacuous: it must remove some)
        "sigmoid_benign_kl_at_most_half_constant_at_equal_suppression": sigmoid["refusal_preferred"] < 1.0 and
        sigmoid["benign_kl_mean"] <= 0.5 * report["equal_sigmoid"]["benign_kl_mean"],
        "sigmoid_suppresses_like_constant_alpha_1": sigmoid["refusal_preferred"] <= full + 1e-9,
        "threshold_removes_95": best["refusal_preferred"] <= 0.05,
        "threshold_benign_kl_at_most_half_constant_at_equal_suppression": best["refusal_preferred"] < 1.0 and
        best["benign_kl_mean"] <= 0.5 * report["equal_threshold"]["benign_kl_mean"],
        "probe_auroc_at_least_0.95": auroc >= 0.95}
    report["seconds"] = time.time() - t0
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=2) + "\n")
    _plot(report, out / "tradeoff.png")
    _markdown(report, out)
    print(json.dumps(report["checks"], indent=2))


def _plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([c["benign_kl_mean"] for c in r["constant"]], [1 - c["refusal_preferred"] for c in r["constant"]], "o-",
            label="constant α (0.25 … 1)")
    ax.plot([g["benign_kl_mean"] for g in r["threshold_grid"]], [1 - g["refusal_preferred"] for g in r["threshold_grid"]],
            "s", alpha=0.6, label="threshold gate (grid of τ)")
    ax.plot([r["sigmoid"]["benign_kl_mean"]], [1 - r["sigmoid"]["refusal_preferred"]], "*", ms=14, label="learned sigmoid gate")
    ax.set(xscale="symlog", xlabel="benign first-token KL (mean)", ylabel="harmful refusal removed",
           title="input-adaptive strength, refusal organism")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _markdown(r, out):
    row = lambda name, s: (f"| {name} | {s['refusal_preferred']:.2f} | {s['harmful_refused']:.2f} | "  # noqa: E731
                           f"{s['benign_kl_mean']:.2e} | {s['benign_kl_max']:.2e} | {s['benign_changed']:.2f} |")
    rows = [row(f"constant α = {c['alpha']}", c) for c in r["constant"]]
    rows.append(row(f"threshold gate, τ = {r['threshold']['threshold']} (grid search)", r["threshold"]))
    rows.append(row("learned sigmoid gate", r["sigmoid"]))
    grid = "\n".join(row(f"τ = {g['threshold']}", g) for g in r["threshold_grid"])
    checks = "\n".join(f"- {'PASS' if v else 'FAIL'}: {k}" for k, v in r["checks"].items())
    nl = "\n"
    text = f"""# Input-adaptive strength on the refusal organism

Command: `{r['command']}` ({r['seconds']:.0f} s on 2 CPU cores). The edit: the optimized steering
vector of [steering-refusal](../steering-refusal/report.md) at `{r['site']}`. The probe (logistic
regression at the same site, the prompt's last token; harmful vs harmless and shield prompts of the
training templates) has AUROC **{r['probe_auroc']:.4f}** on the held-out templates.

Held-out mix: harmful requests (refusal's first token still preferred to the answer's / still refused,
greedy) and benign prompts
(harmless requests and the shields: first-token KL, and the fraction whose greedy reply changed):

| edit | harmful: refusal preferred | harmful: refused | benign KL mean | benign KL max | benign changed |
|---|---|---|---|---|---|
{nl.join(rows)}

The learned gate: w = {r['sigmoid_gate'][0]:.2f}, b = {r['sigmoid_gate'][1]:.2f} ({r['steps']} steps,
{r['train_seconds']:.1f} s); its value averages {r['gate_harmful_mean']:.3f} on the harmful prompts and
{r['gate_benign_mean']:.3f} on the benign ones (max {r['gate_benign_max']:.3f}). At equal harmful suppression the
constant α is {r['equal_sigmoid']['alpha']} (benign KL mean {r['equal_sigmoid']['benign_kl_mean']:.2e}).

The threshold grid:

| τ | harmful: refusal preferred | harmful: refused | benign KL mean | benign KL max | benign changed |
|---|---|---|---|---|---|
{grid}

Checks:
{checks}

![trade-off](tradeoff.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
