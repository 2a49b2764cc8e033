"""Patching-sweep benchmark: scalpel's batched, prefix-reusing sweep vs one
forward per patch (TransformerLens's method), same model, same metric, one run.

    .venv/bin/python bench/bench_patching.py [--threads 2] [--naive-layers 1] [--out docs/results/bench_patching.json]

Model: random weights with Qwen2.5-0.5B's shape (24 layers, 14 heads, d_model
896, vocab 151,936; config from ../shared/tokenizers), float32. Task: patch
every head's z at every position (24 x 14 x 32 = 10,752 patches) from a clean
32-token prompt into a corrupted one; metric: logit difference at the last
position. The naive method costs the same full forward for every patch, so it
is timed on --naive-layers layers (each 14 x 32 patches) and scaled to all 24;
its scores on those layers are checked against the fast sweep's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from patching_task import load_random_qwen, patching_pair

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--naive-layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shared", default=os.environ.get("SCALPEL_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "bench_patching.json"))
    args = ap.parse_args()
    import torch

    import scalpel

    torch.set_num_threads(args.threads)
    scalpel.set_log_level("warn")
    cfg, model, _ = load_random_qwen(args.shared)
    clean, corrupted, metric = patching_pair(cfg.vocab_size, args.tokens)

    t = time.perf_counter()
    model(clean)
    forward_s = time.perf_counter() - t
    t = time.perf_counter()
    fast = scalpel.patch_sweep(model, clean, corrupted, metric, component="z", batch_size=args.batch_size,
                               last_position_only=True)
    fast_s = time.perf_counter() - t
    layers = list(range(args.naive_layers))
    t = time.perf_counter()
    naive = scalpel.patch_sweep_naive(model, clean, corrupted, metric, component="z", layers=layers)
    naive_part_s = time.perf_counter() - t
    n_layers, heads = model.config.n_layers, model.config.n_heads
    naive_s = naive_part_s * n_layers / len(layers)
    max_diff = (fast.scores[: len(layers)] - naive.scores).abs().max().item()
    patches = n_layers * heads * args.tokens
    res = {"threads": args.threads, "model": "random Qwen2.5-0.5B shape", "tokens": args.tokens, "patches": patches,
           "fast_s": fast_s, "naive_measured_layers": len(layers), "naive_measured_s": naive_part_s,
           "naive_all_layers_s": naive_s, "speedup": naive_s / fast_s, "one_forward_s": forward_s,
           "fast_forward_equivalents": fast_s / forward_s, "max_abs_diff_vs_naive": max_diff}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"| sweep (z, every head x position: {patches:,} patches) | seconds | forward-equivalents |")
    print("|---|---|---|")
    print(f"| scalpel patch_sweep (batched rows; starts at the patched layer and position; last-position unembedding) "
          f"| {fast_s:.1f} | {fast_s / forward_s:,.0f} |")
    print(f"| one forward per patch (patch_sweep_naive; {len(layers)} of {n_layers} layers timed: "
          f"{naive_part_s:.1f} s, scaled) | {naive_s:.1f} | {naive_s / forward_s:,.0f} |")
    print(f"\nspeed-up {naive_s / fast_s:.1f}x; max |score difference| on the timed layers {max_diff:.1e}")


if __name__ == "__main__":
    sys.exit(main())
