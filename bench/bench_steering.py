"""Steering-vector and gate overhead on Gemma 3 270M (fp32, 2 threads), side by side in one run:
generation with no vector, with a residual-stream vector at every position, with a per-head
vector on the generated tokens only, with the residual vector behind a sigmoid gate (a probe at
the block before), and a forward pass of 4×128 tokens with and without.

    .venv/bin/python bench/bench_steering.py [--repeat 5] [--tokens 32] [--out docs/results/bench_steering.json]

Interleaved rounds, the minimum of each (bench_forward.best_interleaved).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import scalpel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import best_interleaved  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--out", default=str(REPO / "docs/results/bench_steering.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = scalpel.load("gemma3-270m", dtype="float32")
    g = torch.Generator().manual_seed(0)
    resid = scalpel.SteeringVector.create(model, ["blocks.6.hook_resid_post"])
    resid.vectors = [torch.randn(640, generator=g)]
    head = scalpel.SteeringVector.create(model, [("blocks.9.attn.hook_z", 2)])
    head.vectors = [torch.randn(256, generator=g)]
    head.positions = "generated"
    prompt = "The mechanic walked into the room and said that"
    gen = lambda: model.generate([prompt], max_new_tokens=args.tokens, stop_tokens=[])  # noqa: E731  (all tokens)

    def with_(sv, fn):
        def run():
            with sv.attach(model):
                fn()
        return run

    probe = scalpel.HarmProbe("blocks.5.hook_resid_post", torch.randn(640, generator=g) * 0.01, 0.0)
    gated = scalpel.GatedIntervention.create(model, resid, probe)
    t_plain, t_resid, t_head, t_gated = best_interleaved([gen, with_(resid, gen), with_(head, gen), with_(gated, gen)],
                                                         args.repeat)
    x = torch.randint(10, 20000, (4, 128), generator=g)
    fwd = lambda: model(x)  # noqa: E731
    f_plain, f_resid = best_interleaved([fwd, with_(resid, fwd)], args.repeat)
    res = {"threads": args.threads, "generated_tokens": args.tokens,
           "generate_plain_s": t_plain, "generate_resid_vector_s": t_resid, "generate_head_vector_generated_s": t_head,
           "generate_gated_resid_vector_s": t_gated,
           "per_token_overhead_resid": t_resid / t_plain - 1, "per_token_overhead_head_generated": t_head / t_plain - 1,
           "per_token_overhead_gated": t_gated / t_plain - 1, "gate_over_ungated": t_gated / t_resid - 1,
           "forward_plain_s": f_plain, "forward_resid_vector_s": f_resid, "forward_overhead": f_resid / f_plain - 1}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    scalpel.write_file_atomic(args.out, json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
