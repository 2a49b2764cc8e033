"""Circuit breakers side by side with the peers on Gemma 3 270M's occupational gender bias.

    .venv/bin/python bench/bench_breaker_peers.py [--steps 60] [--out docs/results/breaker-peers]

Needs the peers' venv (bench/requirements-peers.txt, .venv-peers). Same model (the packaged
Gemma 3 270M, float32), same data (scalpel.bias: training occupations and frames, held-out ones
to measure), same loss (mean H² + 10·KL on neutral text), same number of AdamW steps and batch:

    scalpel     a rank-4 breaker on the traced heads and MLPs (docs/results/breaker-gemma-gender),
                trained by scalpel.train_breaker, exported with scalpel.export_peft
    peft-lora   peft LoRA, rank 16, every projection of layers 0..17 (the circuit-breakers paper's
                placement: every layer up to the deepest one the edit targets)
    loreft      pyreft's LoReFT, rank 4, at the breaker's sites (o_proj input of layers 14, 9, 7,
                down_proj input of layers 17, 3), every position

Every method is measured by the same code (bench/breaker_peers.py, in the peers' venv, on the
transformers model): held-out mean |H| and he/she gap, KL on neutral sentences never trained on,
WikiText-2 perplexity. Writes report.json, report.md and peers.png to --out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import scalpel
from scalpel import bias

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO / ".venv-peers" / "bin" / "python"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "docs/results/breaker-peers"))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr-scalpel", type=float, default=5e-3)
    ap.add_argument("--lr-lora", type=float, default=1e-3)
    ap.add_argument("--lr-loreft", type=float, default=2e-3)
    ap.add_argument("--wikitext", type=int, default=24)
    ap.add_argument("--methods", default="base,scalpel,peft-lora,loreft")
    ap.add_argument("--deltas", type=float, nargs="*", default=[0.5, 0.75],
                    help="also measure scalpel's breaker at these δ (the knob; δ = 1 is the row)")
    args = ap.parse_args()
    if not PEERS.exists():
        sys.exit(f"{PEERS} not found: create the peers' venv first (bench/requirements-peers.txt says how)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    traced = json.loads((REPO / "docs/results/breaker-gemma-gender/report.json").read_text())
    heads, mlps = [tuple(h) for h in traced["heads"]], traced["mlps"]

    model = scalpel.load("gemma3-270m", dtype="float32")
    tok = model.tokenizer
    ids = bias.pronoun_ids(tok)
    texts = bias.neutral_text()
    preserve_texts, neutral_eval = texts[0::2], texts[1::2]

    def rows(split):
        return [{"prompt": tok.encode(p["prompt"]), "harmful": ids[p["harmful"]], "neutral": ids[p["neutral"]],
                 "stereotype": p["stereotype"]} for p in bias.gender_pairs(split)]

    data = {"train": rows("train"), "held": rows("held_out"), "preserve": [tok.encode(t) for t in preserve_texts],
            "neutral_eval": [tok.encode(t) for t in neutral_eval],
            "wiki": scalpel.wikitext2(tok, n=args.wikitext, seq_len=128) if args.wikitext else [],
            "sites": {"heads": heads, "mlps": mlps}}
    work = Path(tempfile.mkdtemp(prefix="scalpel-peers-"))
    (work / "data.json").write_text(json.dumps(data))
    model.save_pretrained(str(work / "hf"))
    methods = args.methods.split(",")
    results = {}

    if "scalpel" in methods:
        sites = [(scalpel.hook_name("z", l), h) for l, h in heads] + [scalpel.hook_name("mlp_post", l) for l in mlps]
        bd = scalpel.breaker_data(tok, [p["prompt"] for p in bias.gender_pairs("train")],
                                  [p["harmful"] for p in bias.gender_pairs("train")],
                                  [p["neutral"] for p in bias.gender_pairs("train")], preserve=preserve_texts)
        cb = scalpel.CircuitBreaker.create(model, sites, rank=4, seed=0)
        o = scalpel.TrainOptions()
        o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.seed = args.steps, 16, args.lr_scalpel, \
            args.lr_scalpel / 10, 8, 0
        o.weight_decay, o.run_dir = 0.0, str(work / "scalpel-run")
        res = scalpel.train_breaker(model, cb, bd, scalpel.BreakerObjective(harm="squared", preserve="kl",
                                                                            lambda_preserve=10.0,
                                                                            preserve_batch_size=4), o)
        scalpel.export_peft(model, cb, str(work / "scalpel-adapter"))
        for d in args.deltas:  # the knob, exported as adapters of its own
            scalpel.export_peft(model, cb, str(work / f"scalpel-adapter-{d}"), delta=d)
        curve = [dict(zip(("step", "loss", "harm", "preserve", "lr", "grad_norm"), map(float, line.split(","))))
                 for line in (work / "scalpel-run" / "losses.csv").read_text().splitlines()[1:]]
        results["scalpel"] = {"trainable": cb.num_parameters, "train_seconds": res.seconds, "steps": args.steps,
                              "lr": args.lr_scalpel, "rank": 4, "curve": curve}
        del model

    lrs = {"peft-lora": args.lr_lora, "loreft": args.lr_loreft}
    for m in methods:
        base = [str(PEERS), str(REPO / "bench/breaker_peers.py"), "--hf", str(work / "hf"), "--data",
                str(work / "data.json"), "--method", m, "--steps", str(args.steps), "--threads", str(args.threads)]
        cmd = base + ["--out", str(work / f"{m}.json")]
        if m == "scalpel":
            cmd += ["--adapter", str(work / "scalpel-adapter")]
        if m in lrs:
            cmd += ["--lr", str(lrs[m]), "--rank", "16" if m == "peft-lora" else "4"]
        print("$", " ".join(cmd), flush=True)
        t = time.time()
        subprocess.run(cmd, check=True)
        r = json.loads((work / f"{m}.json").read_text())
        print(f"{m}: {time.time() - t:.0f}s", flush=True)
        results[m] = {**results.get(m, {}), **{k: v for k, v in r.items() if not (m == "scalpel" and k == "trainable")}}
        if m == "scalpel":
            results[m]["delta_curve"] = []
            for d in args.deltas:
                subprocess.run(base + ["--out", str(work / f"scalpel-{d}.json"), "--adapter",
                                       str(work / f"scalpel-adapter-{d}")], check=True)
                r = json.loads((work / f"scalpel-{d}.json").read_text())
                results[m]["delta_curve"].append({"delta": d, **r["held_out"]})

    results = {m: results[m] for m in methods if m in results}  # in --methods order, the model first
    report = {"command": f"python bench/bench_breaker_peers.py --steps {args.steps}",
              "model": "gemma3-270m (packaged Q4_K_M GGUF dequantized to float32), 2 threads",
              "sites": {"heads": heads, "mlps": mlps}, "train_pairs": len(data["train"]),
              "held_out_pairs": len(data["held"]), "results": results}
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=1) + "\n")
    _plot(results, out / "peers.png")
    _markdown(report, out)


NAMES = {"base": "model", "scalpel": "scalpel breaker, rank 4, traced heads + MLPs",
         "peft-lora": "peft LoRA, rank 16, all projections of layers 0-17", "loreft": "pyreft LoReFT, rank 4, same sites"}


def _plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (m, r) in enumerate(results.items()):
        colour = f"C{i}"
        if "curve" in r:
            ax[0].plot([c["step"] for c in r["curve"]], [c["harm"] for c in r["curve"]], label=m, color=colour)
        h = r["held_out"]
        ax[1].scatter(h["neutral_kl_mean"], h["mean_abs_H"], s=40, color=colour)
        ax[1].annotate(m, (h["neutral_kl_mean"], h["mean_abs_H"]), fontsize=8)
        if r.get("delta_curve"):
            pts = [(0.0, results.get("base", r)["held_out"]["mean_abs_H"])] if "base" in results else []
            pts += [(c["neutral_kl_mean"], c["mean_abs_H"]) for c in r["delta_curve"]]
            pts.append((h["neutral_kl_mean"], h["mean_abs_H"]))
            ax[1].plot(*zip(*pts), color=colour, lw=1, ls="--", label=f"{m}: the knob δ")
            ax[1].legend(fontsize=8)
    ax[0].set(xlabel="step", ylabel="training mean H²", yscale="log", title="training")
    ax[0].legend(fontsize=8)
    ax[1].set(xlabel="KL on held-out neutral text", ylabel="held-out mean |H| (nats)", title="harm vs damage")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _markdown(r, out):
    lines = []
    for m, x in r["results"].items():
        h = x["held_out"]
        t = f"{x['train_seconds']:.0f}" if "train_seconds" in x else "—"
        per = f"{x['train_seconds'] / x['steps']:.2f}" if "train_seconds" in x else "—"
        lines.append(f"| {NAMES.get(m, m)} | {x.get('trainable', 0):,} | {x.get('lr', '—')} | {t} | {per} | "
                     f"{h['mean_abs_H']:.3f} | {h['gap']:+.3f} | {h['neutral_kl_mean']:.4f} | {h['wikitext_ppl']:.2f} |")
    for m, x in r["results"].items():
        for c in x.get("delta_curve", []):
            lines.append(f"| {NAMES.get(m, m)}, δ = {c['delta']} | | | | | {c['mean_abs_H']:.3f} | {c['gap']:+.3f} | "
                         f"{c['neutral_kl_mean']:.4f} | {c['wikitext_ppl']:.2f} |")
    nl = "\n"
    text = f"""# Circuit breakers vs peft LoRA and pyreft LoReFT (Gemma 3 270M gender bias)

Command: `{r['command']}`. Model: {r['model']}. Each method: the same {r['train_pairs']} training
pairs, the same loss (mean H² + 10·KL on neutral text), the same number of AdamW steps and batch
(16 pairs + 4 preserve sentences), warm-up 8 steps then cosine to lr/10, clipping at 1.0; each at
its own learning rate (the breaker and LoReFT start at a no-op or near one with few parameters,
LoRA has 90× more). Measured by one harness (bench/breaker_peers.py, on the transformers model)
on {r['held_out_pairs']} held-out pairs (occupations and frames never trained on); scalpel's
breaker is measured there as the PEFT adapter scalpel exports. Breaker sites: heads
{r['sites']['heads']}, MLPs {r['sites']['mlps']} (traced, docs/results/breaker-gemma-gender).

| method | trainable | lr | train s | s/step | mean \\|H\\| | he/she gap | neutral KL | WikiText-2 ppl |
|---|---|---|---|---|---|---|---|---|
{nl.join(lines)}

![peers](peers.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
