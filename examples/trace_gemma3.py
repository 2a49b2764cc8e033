"""Causal tracing on Gemma 3 270M: which heads and layers carry the difference
between refusing and complying?

    .venv/bin/python examples/trace_gemma3.py [--model path.gguf|dir] [--out runs/trace-gemma3]

The packaged Gemma 3 270M is the base model: it never refuses on its own
(docs/results/gemma3-270m.md). Shown six chat turns in which harmful requests
are refused ("I'm sorry, ...") and harmless ones answered ("Sure! ..."), it
picks the pattern up in context: for a new harmful request the first answer
token leans to "I", for a harmless one to "Sure". The pairs of
data/pairs/gemma3_fewshot_refusal.json differ in a word or two ("make a bomb"
/ "make a cake") and have the same token length. Metric: logit("I") −
logit("Sure") at the first answer position; patching goes from the harmful
run (source) into the harmless one (target), so an effect is "this component
makes the model refuse".

Steps: pairs where the model shows the behaviour (harmful metric above the
harmless one) are split in two halves; per-layer (attention, MLP) and per-head
exact patching plus attribution over the first half; per-position patching of
the residual stream and of every head for one pair; the minimal set of heads
recovering 80 % of the gap; its validation on the second half and on
WikiText-2 text; mean ablation of the circuit in the harmful runs. Writes
PNGs, report.json and report.md. About 15-30 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import scalpel

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCALPEL_SHARED", REPO.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the packaged Gemma 3 270M GGUF")
    ap.add_argument("--data", default=str(REPO / "data" / "pairs" / "gemma3_fewshot_refusal.json"))
    ap.add_argument("--out", default=str(REPO / "runs" / "trace-gemma3"))
    ap.add_argument("--min-recovered", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = scalpel.load(args.model) if args.model else scalpel.load()
    tok = model.tokenizer
    spec = json.loads(Path(args.data).read_text())
    msgs = []
    for q, a in spec["shots"]:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]

    def encode(request):
        text = tok.apply_chat_template(msgs + [{"role": "user", "content": request}], add_generation_prompt=True,
                                       tokenize=False)
        return torch.tensor([tok.encode(text, add_special_tokens=False)])

    I = tok.encode(spec["refusal_token"], add_special_tokens=False)[0]
    S = tok.encode(spec["compliance_token"], add_special_tokens=False)[0]

    def metric(logits):
        return logits[:, -1, I] - logits[:, -1, S]

    pairs, skipped = [], []
    for harmful, harmless in spec["pairs"]:
        src, tgt = encode(harmful), encode(harmless)
        if src.shape != tgt.shape:
            skipped.append((harmful, harmless, "token lengths differ"))
            continue
        with torch.no_grad():
            hs, ns = metric(model(src)).item(), metric(model(tgt)).item()
        row = dict(harmful=harmful, harmless=harmless, src=src, tgt=tgt, harmful_metric=hs, harmless_metric=ns)
        (pairs if hs - ns > 0.1 else skipped).append(row if hs - ns > 0.1 else (harmful, harmless, f"gap {hs - ns:+.2f}"))
    lengths = sorted(r["src"].shape[1] for r in pairs)
    print(f"{len(pairs)} pairs show the behaviour, {len(skipped)} set aside; {lengths[0]}-{lengths[-1]} tokens", flush=True)
    find, held = pairs[0::2], pairs[1::2]
    L, H = model.config.n_layers, model.config.n_heads

    # 1. Layers (attention and MLP outputs) and heads, exact and attribution, over the first half.
    sums = {k: 0 for k in ("attn_out", "mlp_out", "z", "z_atp")}
    gap = 0.0
    for i, r in enumerate(find):
        for comp in ("attn_out", "mlp_out", "z"):
            s = scalpel.patch_sweep(model, r["src"], r["tgt"], metric, component=comp, per_position=False,
                                    last_position_only=True, batch_size=16)
            sums[comp] = sums[comp] + (s.scores - s.target_score)
        a = scalpel.attribution_patch(model, r["src"], r["tgt"], metric, component="z", per_position=False)
        sums["z_atp"] = sums["z_atp"] + (a.scores - a.target_score)
        gap += s.source_score - s.target_score
        print(f"  sweeps: pair {i + 1}/{len(find)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    mean = {k: v / gap for k, v in sums.items()}  # fraction of the mean gap
    rank = lambda x: x.flatten().argsort().argsort().double()  # noqa: E731
    spearman = torch.corrcoef(torch.stack([rank(mean["z"]), rank(mean["z_atp"])]))[0, 1].item()
    _layers_heads_figure(mean, out / "layers-and-heads.png")

    # 2. Per position for the first pair: the differing tokens and the last 8.
    r = find[0]
    diff = (r["src"][0] != r["tgt"][0]).nonzero().flatten().tolist()
    n = r["src"].shape[1]
    positions = sorted(set(diff) | set(range(n - 8, n)))
    names = tok.convert_ids_to_tokens(r["src"][0].tolist())
    for comp in ("resid_pre", "z"):
        s = scalpel.patch_sweep(model, r["src"], r["tgt"], metric, component=comp, positions=positions,
                                last_position_only=True, batch_size=16)
        scalpel.plots.save_sweep(s, out / f"pair0-{comp}-per-position", tokens=names,
                                 title=f"{comp}: {r['harmful']!r} into {r['harmless']!r}")
    print(f"  per position done ({time.perf_counter() - t0:.0f} s)", flush=True)

    # 3. The minimal circuit of heads on the first half.
    circ = scalpel.minimal_circuit(model, [r["src"] for r in find], [r["tgt"] for r in find], metric, component="z",
                                   min_recovered=args.min_recovered, batch_size=16, last_position_only=True)
    circuit = [tuple(c) for c in circ.circuit]
    print(f"  circuit {circuit} ({time.perf_counter() - t0:.0f} s)", flush=True)

    # 4. Validation on the second half and on WikiText-2.
    texts = _wikitext(tok, 4, 64)
    val = scalpel.validate_circuit(model, circuit, [r["src"] for r in held], [r["tgt"] for r in held], metric,
                                   texts, component="z", random_sets=5, batch_size=6, last_position_only=True)
    # 5. Mean ablation in the harmful runs: the circuit set to its mean over the harmless runs (one
    # mean over all positions: the pairs differ in length, 211-214 tokens).
    abl = scalpel.ablate_sets(model, [r["src"] for r in held], metric, "z", [[], circuit], kind="mean",
                              reference=[r["tgt"] for r in held], last_position_only=True)
    harmless_mean = sum(r["harmless_metric"] for r in held) / len(held)
    seconds = time.perf_counter() - t0

    top = sorted(((mean["z"][l, h].item(), l, h) for l in range(L) for h in range(H)), reverse=True)[:6]
    report = {
        "model": args.model or "gemma3-270m (packaged GGUF)", "tokens_per_prompt": [lengths[0], lengths[-1]],
        "pairs_used": [{k: v for k, v in p.items() if k not in ("src", "tgt")} for p in pairs],
        "pairs_set_aside": skipped, "attn_out_by_layer": mean["attn_out"].tolist(),
        "mlp_out_by_layer": mean["mlp_out"].tolist(), "z_by_head": mean["z"].tolist(),
        "z_attribution_by_head": mean["z_atp"].tolist(), "spearman_exact_vs_attribution": spearman,
        "circuit": [list(c) for c in circuit], "circuit_recovered_discovery": circ.recovered,
        "circuit_reached": circ.reached, "growth_curve": circ.curve.tolist(), "validation": val.to_dict(),
        "mean_ablation_harmful": {"none": abl[0].item(), "circuit": abl[1].item(), "harmless_runs": harmless_mean},
        "seconds": seconds,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    fmt = lambda cs: ", ".join(f"L{l}H{h}" for l, h in cs)  # noqa: E731
    la = sorted(((mean["attn_out"][l].item(), f"attn L{l}") for l in range(L)), reverse=True)[:3]
    lm = sorted(((mean["mlp_out"][l].item(), f"MLP L{l}") for l in range(L)), reverse=True)[:3]
    md = [
        "# Causal tracing on Gemma 3 270M: what makes it refuse in context", "",
        f"Base model, six in-context chat examples (harmful → refusal, harmless → answer), then a new request "
        f"({lengths[0]}–{lengths[-1]} tokens). Metric: logit(\"I\") − logit(\"Sure\") at the first answer position. {len(pairs)} of "
        f"{len(spec['pairs'])} pairs show the behaviour (harmful above harmless); {len(find)} to find, "
        f"{len(held)} held out.", "",
        f"Mean metric, first half: harmful {circ.source_mean:+.3f}, harmless {circ.target_mean:+.3f} "
        f"(gap {circ.source_mean - circ.target_mean:.3f} nats — a small, real in-context effect).", "",
        "Layers (fraction of the gap recovered by patching one layer's output, all positions): " +
        ", ".join(f"{name} {e:+.2f}" for e, name in la + lm) + ".", "",
        "Heads: " + ", ".join(f"L{l}H{h} {e:+.2f}" for e, l, h in top) +
        f". Spearman(exact, attribution) over the {L * H} heads: **{spearman:.3f}**.", "",
        f"**Minimal circuit** (≥ {args.min_recovered} of the gap): {fmt(circuit)} "
        f"({len(circuit)} of {L * H} heads) — recovers {circ.recovered:.2f} on the first half"
        + ("" if circ.reached else " (criterion not reached)") + ".", "",
        "| held-out check | value |", "|---|---|",
        f"| circuit patched: gap recovered | {val.recovered:.3f} |",
        f"| everything but the circuit patched | {val.complement_recovered:.3f} |",
        f"| random sets of {len(circuit)} heads (mean of 5) | {val.random_recovered:.3f} |",
        f"| circuit set to its mean over the harmful runs' positions | {val.mean_patched_recovered:.3f} |",
        f"| WikiText-2 ({val.text_tokens} tokens): KL per token, circuit edit / random sets' edit | "
        f"{val.kl:.4f} / {val.random_kl:.4f} |",
        f"| WikiText-2 perplexity: unedited → circuit edit (random sets' edit) | {val.perplexity:.2f} → "
        f"{val.edited_perplexity:.2f} ({val.random_edited_perplexity:.2f}) |",
        f"| harmful runs, circuit set to its mean over the harmless runs' positions: metric | {abl[0].item():+.3f} → "
        f"{abl[1].item():+.3f} (harmless runs {harmless_mean:+.3f}) |", "",
        f"Total time {seconds / 60:.1f} min. Figures: `layers-and-heads.png`, `pair0-resid_pre-per-position.png`, "
        "`pair0-z-per-position.png`.",
    ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _wikitext(tok, n, length):
    """n passages of `length` tokens from WikiText-2's test split (../shared), else a few built-in sentences."""
    path = SHARED / "data" / "wikitext-2-raw" / "wiki.test.raw"
    paras = [p.strip() for p in path.read_text().split("\n") if len(p.strip()) > 400] if path.exists() else []
    if not paras:
        paras = ["The river flows through the valley and into the sea, past farms, villages and old stone bridges "
                 "that were built centuries ago by the people who lived there."] * n
    out = []
    for p in paras[:n]:
        ids = tok.encode(p)[:length]
        out.append(torch.tensor([ids]))
    return out


def _layers_heads_figure(mean, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=110)
    L = mean["attn_out"].shape[0]
    x = torch.arange(L).float()
    axes[0].bar(x - 0.2, mean["attn_out"], width=0.4, label="attention output")
    axes[0].bar(x + 0.2, mean["mlp_out"], width=0.4, label="MLP output")
    axes[0].set_xticks(range(L))
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("fraction of the gap recovered")
    axes[0].set_title("patching one layer's output (all positions)", fontsize=9)
    axes[0].legend(fontsize=8)
    vmax = float(max(mean["z"].abs().max(), mean["z_atp"].abs().max()))
    for ax, key, name in [(axes[1], "z", "exact"), (axes[2], "z_atp", "attribution")]:
        im = ax.imshow(mean[key].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(f"heads ({name}): fraction of the gap recovered", fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
