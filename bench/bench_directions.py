"""Directions benchmark: the two costly steps of refusal-direction work, scalpel vs
transformers with PyTorch forward hooks (how refusal_direction / heretic do it),
same weights, one run.

    .venv/bin/python bench/bench_directions.py [--threads 2] [--prompts 32] [--candidates 6]

Model: random weights with Qwen2.5-0.5B's shape (bench/patching_task.py), float32.
Prompts: random tokens, 16..32 long (left-padded batches).
1. Activations: resid_pre of all 24 layers at the last 5 positions of every prompt
   (scalpel collect_activations vs transformers output_hidden_states); and of one
   layer (24 // 3 = 8: extracting atoms at a selected site), where scalpel stops the
   forward pass after block 8.
2. Candidate evaluation (Arditi et al.'s selection loop): for each candidate
   direction, project it out of every write into the residual stream (embedding,
   attention output, MLP output at every layer) and read the last position's
   logits (scalpel ablate_direction + last_logits vs forward hooks on
   embed_tokens / self_attn / mlp).
Both results are checked against each other. Best of --repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from patching_task import load_random_qwen

REPO = Path(__file__).resolve().parents[1]


def best(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shared", default=os.environ.get("SCALPEL_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "bench_directions.json"))
    args = ap.parse_args()
    import torch

    import scalpel

    torch.set_num_threads(args.threads)
    scalpel.set_log_level("warn")
    cfg, model, hf = load_random_qwen(args.shared, with_transformers=True)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, cfg.vocab_size, (int(n),), generator=g).tolist()
               for n in torch.randint(16, 33, (args.prompts,), generator=g)]
    L, positions = cfg.num_hidden_layers, [-5, -4, -3, -2, -1]
    names = [scalpel.hook_name("resid_pre", l) for l in range(L)]

    T = max(map(len, prompts))
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    pos_ids = (mask.cumsum(1) - 1).clamp_min(0)

    # 1. activations
    ours, s_act = best(lambda: scalpel.collect_activations(model, prompts, names, positions, 32), args.repeats)

    def hf_acts():
        with torch.no_grad():
            hs = hf(input_ids=ids, attention_mask=mask, position_ids=pos_ids, output_hidden_states=True).hidden_states
        return torch.stack([torch.stack([hs[l][:, p] for p in positions], 1) for l in range(L)], 1)

    theirs, t_act = best(hf_acts, args.repeats)
    act_diff = (ours - theirs).abs().max().item()

    # 1b. one early site (an atom's extraction at the selected layer): scalpel stops after the
    # last block it reads; output_hidden_states runs the whole model.
    site = L // 3
    ours1, s_one = best(lambda: scalpel.collect_activations(model, prompts, [scalpel.hook_name("resid_pre", site)],
                                                            positions, 32), args.repeats)

    def hf_one():
        with torch.no_grad():
            hs = hf(input_ids=ids, attention_mask=mask, position_ids=pos_ids, output_hidden_states=True).hidden_states
        return torch.stack([hs[site][:, p] for p in positions], 1).unsqueeze(1)

    theirs1, t_one = best(hf_one, args.repeats)
    one_diff = (ours1 - theirs1).abs().max().item()

    # 2. candidate evaluation
    cands = [torch.randn(cfg.hidden_size, generator=g) for _ in range(args.candidates)]

    def ours_eval():
        out = []
        for v in cands:
            with scalpel.ablate_direction(model, v):
                out.append(scalpel.last_logits(model, prompts, 32))
        return torch.stack(out)

    def hf_eval():
        out = []
        for v in cands:
            u = v / v.norm()

            def proj(mod, inp, output):
                x = output[0] if isinstance(output, tuple) else output
                x = x - (x @ u).unsqueeze(-1) * u
                return (x, *output[1:]) if isinstance(output, tuple) else x

            mods = [hf.model.embed_tokens] + [m for layer in hf.model.layers for m in (layer.self_attn, layer.mlp)]
            handles = [m.register_forward_hook(proj) for m in mods]
            try:
                with torch.no_grad():
                    out.append(hf(input_ids=ids, attention_mask=mask, position_ids=pos_ids).logits[:, -1])
            finally:
                for h in handles:
                    h.remove()
        return torch.stack(out)

    ours_l, s_eval = best(ours_eval, args.repeats)
    theirs_l, t_eval = best(hf_eval, args.repeats)
    eval_diff = (ours_l - theirs_l).abs().max().item()

    res = {"threads": args.threads, "model": "random Qwen2.5-0.5B shape", "prompts": args.prompts,
           "candidates": args.candidates,
           "activations": {"scalpel_s": s_act, "transformers_s": t_act, "speedup": t_act / s_act,
                           "max_abs_diff": act_diff},
           "one_site": {"layer": site, "scalpel_s": s_one, "transformers_s": t_one, "speedup": t_one / s_one,
                        "max_abs_diff": one_diff},
           "candidate_eval": {"scalpel_s": s_eval, "transformers_s": t_eval, "speedup": t_eval / s_eval,
                              "max_abs_diff": eval_diff}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"| step ({args.prompts} prompts of 16-32 tokens) | scalpel s | transformers + hooks s | ratio | max abs diff |")
    print("|---|---|---|---|---|")
    print(f"| resid_pre at {L} layers x 5 positions | {s_act:.2f} | {t_act:.2f} | {t_act / s_act:.2f}x | {act_diff:.1e} |")
    print(f"| resid_pre at layer {site} x 5 positions | {s_one:.2f} | {t_one:.2f} | {t_one / s_one:.2f}x | "
          f"{one_diff:.1e} |")
    print(f"| {args.candidates} candidates: ablate from every write, last-position logits | {s_eval:.2f} | "
          f"{t_eval:.2f} | {t_eval / s_eval:.2f}x | {eval_diff:.1e} |")


if __name__ == "__main__":
    sys.exit(main())
