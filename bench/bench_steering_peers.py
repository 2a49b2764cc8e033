"""Steering vectors side by side with steering-vectors and repeng on Gemma 3 270M.

    .venv/bin/python bench/bench_steering_peers.py [--out docs/results/steering-peers]

Needs the peers' venv (bench/requirements-peers.txt). Contrast: the occupational gender-bias
prompts of scalpel.bias (each training frame with a female-dominated occupation vs the same frame
with a male-dominated one), read at each prompt's last token, at the output of every block
1..n-1 (hook_resid_post; steering-vectors' "decoder_block" and repeng's layer k read the same
point). Compared per layer:
  * scalpel's "mean" vector vs steering-vectors' mean_aggregator: cosine and relative difference;
  * scalpel's "pca_diff" vector vs repeng's pca_diff: cosine (repeng's is unit norm);
  * scalpel's control-vector GGUF read back by repeng's import_gguf: the same vectors, layer by layer;
and the time each library takes to extract every layer's vector from the same prompts.
Writes report.json, report.md and cosines.png to --out.
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
    ap.add_argument("--out", default=str(REPO / "docs/results/steering-peers"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    if not PEERS.exists():
        sys.exit(f"{PEERS} not found: create the peers' venv first (bench/requirements-peers.txt says how)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = scalpel.load("gemma3-270m", dtype="float32")
    tok = model.tokenizer
    L = model.config.n_layers
    layers = list(range(1, L))
    pairs = bias.gender_pairs("train")
    male = [p for p in pairs if p["stereotype"] == "male"]
    female = [p for p in pairs if p["stereotype"] == "female"]
    positive, negative = [], []
    for f in sorted({p["frame"] for p in pairs}):
        fs = [p["prompt"] for p in female if p["frame"] == f]
        ms = [p["prompt"] for p in male if p["frame"] == f]
        positive += fs[:len(ms)]
        negative += ms[:len(fs)]
    sites = [scalpel.hook_name("resid_post", k) for k in layers]
    pos_ids, neg_ids = [tok.encode(p) for p in positive], [tok.encode(n) for n in negative]

    t = time.perf_counter()
    mean = scalpel.SteeringVector.from_contrast(model, sites, pos_ids, neg_ids, batch_size=args.batch_size)
    t_mean = time.perf_counter() - t
    t = time.perf_counter()
    pca = scalpel.SteeringVector.from_contrast(model, sites, pos_ids, neg_ids, method="pca_diff",
                                               batch_size=args.batch_size)
    t_pca = time.perf_counter() - t

    work = Path(tempfile.mkdtemp(prefix="scalpel-steering-peers-"))
    model.save_pretrained(str(work / "hf"))
    scalpel.export_control_vector(model, mean, str(work / "mean.gguf"))
    (work / "data.json").write_text(json.dumps({"positive": positive, "negative": negative, "layers": layers,
                                                "batch_size": args.batch_size, "gguf": str(work / "mean.gguf")}))
    subprocess.run([str(PEERS), str(REPO / "bench/steering_peers.py"), "--hf", str(work / "hf"), "--data",
                    str(work / "data.json"), "--out", str(work / "peers.safetensors"), "--threads", str(args.threads)],
                   check=True)
    from safetensors import safe_open
    with safe_open(str(work / "peers.safetensors"), "pt") as f:
        peers = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    peer_seconds = json.loads(meta["seconds"])

    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))  # noqa: E731
    rows = []
    for i, k in enumerate(layers):
        m, p = mean.vectors[i], pca.vectors[i]
        sv = peers[f"steering_vectors.{k}"]
        rows.append({"layer": k, "norm": float(m.norm()),
                     "cos_mean_vs_steering_vectors": cos(m, sv),
                     "rel_diff_mean_vs_steering_vectors": float((m - sv).norm() / sv.norm()),
                     "cos_pca_vs_repeng": cos(p, peers[f"repeng.{k}"]),
                     "gguf_via_repeng_max_abs_diff": float((peers[f"repeng_gguf.{k}"] - m).abs().max())})
    report = {"command": "python bench/bench_steering_peers.py", "model": "gemma3-270m (float32), 2 threads",
              "pairs": len(positive), "layers": layers, "rows": rows,
              "seconds": {"scalpel_mean": t_mean, "scalpel_pca_diff": t_pca, **peer_seconds},
              "gguf_model_hint_read_by_repeng": meta["gguf_model_type"],
              "min_cos_mean": min(r["cos_mean_vs_steering_vectors"] for r in rows),
              "min_abs_cos_pca_below_last": min(abs(r["cos_pca_vs_repeng"]) for r in rows[:-1]),
              "abs_cos_pca_last": abs(rows[-1]["cos_pca_vs_repeng"]),
              "pca_sign_differs": [r["layer"] for r in rows if r["cos_pca_vs_repeng"] < 0],
              "max_gguf_diff": max(r["gguf_via_repeng_max_abs_diff"] for r in rows)}
    scalpel.write_file_atomic(str(out / "report.json"), json.dumps(report, indent=1) + "\n")
    _plot(report, out / "cosines.png")
    _markdown(report, out)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))


def _plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ks = [x["layer"] for x in r["rows"]]
    ax.plot(ks, [1 - x["cos_mean_vs_steering_vectors"] for x in r["rows"]], "o-", label="mean vs steering-vectors")
    ax.plot(ks, [1 - abs(x["cos_pca_vs_repeng"]) for x in r["rows"]], "s-", label="pca_diff vs repeng (|cos|)")
    ax.set(xlabel="block (output)", ylabel="1 − cosine", yscale="symlog", title="scalpel vs the peers, per layer")
    ax.axhline(1e-4, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _markdown(r, out):
    s = r["seconds"]
    rows = "\n".join(f"| {x['layer']} | {x['norm']:.2f} | {x['cos_mean_vs_steering_vectors']:.7f} | "
                     f"{x['rel_diff_mean_vs_steering_vectors']:.1e} | {x['cos_pca_vs_repeng']:.7f} | "
                     f"{x['gguf_via_repeng_max_abs_diff']:.1e} |" for x in r["rows"])
    text = f"""# Steering vectors vs steering-vectors and repeng (Gemma 3 270M)

Command: `{r['command']}`. Model: {r['model']}. Contrast: {r['pairs']} pairs of scalpel.bias's
training prompts (the same frame with a female- vs a male-dominated occupation), read at the last
token at the output of every block 1..{r['layers'][-1]}.

Smallest cosine over the layers, scalpel "mean" vs steering-vectors' mean_aggregator:
**{r['min_cos_mean']:.7f}** (the bar: 0.9999). scalpel "pca_diff" vs repeng's pca_diff: smallest |cosine|
over blocks 1..{r['layers'][-2]} **{r['min_abs_cos_pca_below_last']:.7f}**. Two differences, both repeng's
conventions: the sign (repeng orients the component by a majority vote of the raw states'
projections, scalpel towards the mean difference; they disagree at blocks {r['pca_sign_differs']}),
and the last block ({r['layers'][-1]}: |cosine| {r['abs_cos_pca_last']:.4f}), where repeng reads
`hidden_states[{r['layers'][-1] + 1}]`, which transformers returns *after* the final norm, while it steers
(and scalpel reads) the block's output before it. scalpel's control vector read back by repeng's
`import_gguf`: largest difference {r['max_gguf_diff']:.1e}, model hint
"{r['gguf_model_hint_read_by_repeng']}".

Time to extract every layer's vector from the same prompts (2 threads): scalpel mean
{s['scalpel_mean']:.2f} s, scalpel pca_diff {s['scalpel_pca_diff']:.2f} s, steering-vectors
{s['steering_vectors']:.2f} s, repeng {s['repeng']:.2f} s.

| block | \\|mean\\| | cos(mean, steering-vectors) | rel. diff | cos(pca_diff, repeng) | GGUF via repeng, max \\|Δ\\| |
|---|---|---|---|---|---|
{rows}

![cosines](cosines.png)
"""
    scalpel.write_file_atomic(str(out / "report.md"), text)


if __name__ == "__main__":
    main()
