"""Circuit breaker costs on Gemma 3 270M (fp32, 2 threads), side by side in one run:

  1. forward overhead: the plain model vs an attached (unmerged) breaker vs the merged breaker;
  2. a training step: scalpel's train_breaker vs a peft LoRA of the same placement and rank
     on the transformers model (same batch, same loss: softplus of the harm margin), AdamW.

    .venv/bin/python bench/bench_breaker.py [--threads 2] [--repeat 5] [--out docs/results/bench_breaker.json]

Placement: attn.hook_z of 4 heads (layers 6, 9, 12, 15: the o_proj input of those layers) and
mlp.hook_post of layers 9 and 15 (the down_proj input), rank 4. The peft LoRA targets the same
o_proj / down_proj modules with r = 4 — the same function class for the MLPs and a superset for the
heads (LoRA's A reads all heads of o_proj's input).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import scalpel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import best  # noqa: E402
from scalpel import bias

REPO = Path(__file__).resolve().parents[1]
HEADS = [(6, 1), (9, 0), (12, 2), (15, 3)]
MLPS = [9, 15]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default=str(REPO / "docs/results/bench_breaker.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = scalpel.load("gemma3-270m", dtype="float32")
    tok = model.tokenizer
    sites = [(scalpel.hook_name("z", l), h) for l, h in HEADS] + [scalpel.hook_name("mlp_post", l) for l in MLPS]
    cb = scalpel.CircuitBreaker.create(model, sites, rank=4)
    g = torch.Generator().manual_seed(0)
    for a in cb.adapters:
        a.B = torch.randn(a.B.shape, generator=g) * 0.01
    x = torch.randint(10, 20000, (4, 128), generator=g)
    res = {"threads": args.threads, "tokens": list(x.shape)}

    # 1. forward overhead (interleaved rounds, min of each)
    plain, attached = [], []
    for _ in range(args.repeat):
        plain.append(best(lambda: model(x), 1, warmup=0))
        with cb.attach(model):
            attached.append(best(lambda: model(x), 1, warmup=0))
    res["forward_plain_s"], res["forward_attached_s"] = min(plain), min(attached)
    cb.merge(model)
    res["forward_merged_s"] = best(lambda: model(x), args.repeat)
    res["attached_overhead"] = res["forward_attached_s"] / res["forward_plain_s"] - 1
    res["merged_overhead"] = res["forward_merged_s"] / res["forward_plain_s"] - 1
    del model

    # 2. a training step, same batch and loss
    pairs = bias.gender_pairs("train")[:8]
    model = scalpel.load("gemma3-270m", dtype="float32")
    data = scalpel.breaker_data(tok, [p["prompt"] for p in pairs], [p["harmful"] for p in pairs],
                                [p["neutral"] for p in pairs])
    cb = scalpel.CircuitBreaker.create(model, sites, rank=4)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.warmup_steps = 1, 8, 1e-3, 1
    objective = scalpel.BreakerObjective(harm="margin", preserve="none")
    scalpel.train_breaker(model, cb, data, objective, o)  # warm-up, as best() does for peft
    o.steps = args.steps
    r = scalpel.train_breaker(model, cb, data, objective, o)
    res["scalpel_step_s"] = r.seconds / r.steps  # mean over the steps
    res["scalpel_trainable"] = cb.num_parameters

    import peft
    import transformers
    path = scalpel.packaged.packaged_model_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    targets = [f"model.layers.{l}.self_attn.o_proj" for l, _ in HEADS] + [f"model.layers.{l}.mlp.down_proj" for l in MLPS]
    pm = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets, lora_dropout=0.0))
    res["peft_trainable"] = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
    tf = scalpel.teacher_forced_batch(data.prompts + data.prompts, data.harmful + data.neutral)

    def peft_step():
        opt.zero_grad()
        logits = pm(input_ids=tf.tokens, attention_mask=tf.attention_mask).logits
        lp = scalpel.masked_logprob(logits, tf.tokens, tf.target_mask)
        n = lp.shape[0] // 2
        loss = torch.nn.functional.softplus(lp[:n] - lp[n:]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in pm.parameters() if p.requires_grad], 1.0)
        opt.step()

    peft_step()  # warm-up
    t = time.perf_counter()
    for _ in range(args.steps):
        peft_step()
    res["peft_step_s"] = (time.perf_counter() - t) / args.steps  # mean over the steps, as scalpel's
    res["step_ratio_peft_over_scalpel"] = res["peft_step_s"] / res["scalpel_step_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    scalpel.write_file_atomic(args.out, json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
