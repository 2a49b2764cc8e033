"""Attribution patching: cost in forward passes, and accuracy against exact patching.

    .venv/bin/python bench/bench_attribution.py [--threads 2] [--out docs/results/bench_attribution.json]

Cost: on a random-weight model of Qwen2.5-0.5B's shape (24 layers, 14 heads,
config from ../shared/tokenizers), 32 tokens, float32: one forward pass vs
attribution_patch of every head's z at every position (10,752 estimates), and
AtP* (qk_fix) of every key head x position — each as forward-equivalents
(median of --repeats runs; the metric reads the last position, so both
unembed only it, like bench_patching.py's exact sweep).
Accuracy: TinyStories-656K (../shared/models), the 32 name-copying pairs of
data/pairs/tinystories_name_copy.jsonl (first --pairs): Spearman and mean abs
error (fraction of each pair's gap) of AtP and AtP* against exact patching of
k and q, whole heads and head x position.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from patching_task import load_random_qwen, patching_pair

REPO = Path(__file__).resolve().parents[1]


def _timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--shared", default=os.environ.get("SCALPEL_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "bench_attribution.json"))
    args = ap.parse_args()
    import torch

    import scalpel

    torch.set_num_threads(args.threads)
    scalpel.set_log_level("warn")
    res = {"threads": args.threads}

    # Cost, in forward passes of the same model on the same tokens.
    cfg, model, _ = load_random_qwen(args.shared)
    clean, corrupted, metric = patching_pair(cfg.vocab_size, args.tokens)

    with torch.no_grad():
        model(clean)
        forward_s = _timed(lambda: model(clean), args.repeats)
    # the metric reads the last position: unembed only it, as bench_patching.py's exact sweep does
    atp_s = _timed(lambda: scalpel.attribution_patch(model, clean, corrupted, metric, component="z",
                                                     last_position_only=True), args.repeats)
    star_s = _timed(lambda: scalpel.attribution_patch(model, clean, corrupted, metric, component="k", qk_fix=True,
                                                      last_position_only=True), args.repeats)
    heads, layers = model.config.n_heads, model.config.n_layers
    res["cost"] = {"model": "random Qwen2.5-0.5B shape", "tokens": args.tokens, "forward_s": forward_s,
                   "atp_z_s": atp_s, "atp_z_forward_equivalents": atp_s / forward_s,
                   "atp_z_estimates": layers * heads * args.tokens,
                   "atp_star_k_s": star_s, "atp_star_k_forward_equivalents": star_s / forward_s,
                   "atp_star_k_estimates": layers * model.config.n_kv_heads * args.tokens}
    del model

    # Accuracy on real weights.
    model = scalpel.load(str(Path(args.shared) / "models" / "tinystories-656k"))
    pairs = [scalpel.tokenize_prompt_pair(model.tokenizer, p) for p in
             scalpel.load_prompt_pairs(str(REPO / "data" / "pairs" / "tinystories_name_copy.jsonl"))][: args.pairs]

    def rank(x):
        return x.flatten().argsort().argsort().double()

    rows = []
    for comp in ("k", "q"):
        for per_position in (False, True):
            ex, at, st = [], [], []
            for t in pairs:
                m = lambda lg, x=t.answer, y=t.corrupted_answer: lg[:, -1, x] - lg[:, -1, y]  # noqa: E731
                s, c = torch.tensor([t.clean]), torch.tensor([t.corrupted])
                e = scalpel.patch_sweep(model, s, c, m, component=comp, per_position=per_position)
                p1 = scalpel.attribution_patch(model, s, c, m, component=comp, per_position=per_position)
                p2 = scalpel.attribution_patch(model, s, c, m, component=comp, per_position=per_position, qk_fix=True)
                gap = e.source_score - e.target_score
                for lst, r in ((ex, e), (at, p1), (st, p2)):
                    lst.append(((r.scores - r.target_score) / gap).flatten())
            ex, at, st = torch.cat(ex), torch.cat(at), torch.cat(st)
            big = ex.abs() > 0.1
            row = {"component": comp, "per_position": per_position, "estimates": ex.numel()}
            for name, est in (("atp", at), ("atp_star", st)):
                row[f"{name}_spearman"] = torch.corrcoef(torch.stack([rank(ex), rank(est)]))[0, 1].item()
                row[f"{name}_mean_abs_error"] = (ex - est).abs().mean().item()
                row[f"{name}_missed"] = int((big & (est.abs() < 0.5 * ex.abs())).sum())
            row["large_effects"] = int(big.sum())
            rows.append(row)
    res["accuracy"] = {"model": "TinyStories-656K", "pairs": len(pairs), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    c = res["cost"]
    print(f"one forward ({c['tokens']} tokens): {c['forward_s'] * 1e3:.1f} ms")
    print(f"AtP, z of every head x position ({c['atp_z_estimates']:,} estimates): {c['atp_z_s'] * 1e3:.1f} ms = "
          f"{c['atp_z_forward_equivalents']:.2f} forward-equivalents")
    print(f"AtP* (qk_fix), k of every key head x position ({c['atp_star_k_estimates']:,}): {c['atp_star_k_s'] * 1e3:.1f} ms"
          f" = {c['atp_star_k_forward_equivalents']:.2f} forward-equivalents")
    print("| component | AtP Spearman | AtP mean abs error | AtP* Spearman | AtP* mean abs error | large effects missed (AtP / AtP*) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['component']}, {'head x position' if r['per_position'] else 'whole head'} | {r['atp_spearman']:.3f} | "
              f"{r['atp_mean_abs_error']:.4f} | {r['atp_star_spearman']:.3f} | {r['atp_star_mean_abs_error']:.4f} | "
              f"{r['atp_missed']} / {r['atp_star_missed']} of {r['large_effects']} |")


if __name__ == "__main__":
    main()
