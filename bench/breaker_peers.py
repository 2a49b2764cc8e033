"""The peers' side of the circuit-breaker comparison (bench/bench_breaker_peers.py drives it).

Runs in its own venv (.venv-peers, bench/requirements-peers.txt) and imports nothing from scalpel:
the transformers model, plain PyTorch for the loss and the optimizer, and the peer library for the
adapter. Every method is trained and measured by the same code here:

    base         the model as it is (measured only)
    scalpel      scalpel's trained breaker, exported by scalpel.export_peft and loaded with
                 peft.PeftModel.from_pretrained (measured only; scalpel trains it)
    peft-lora    a peft LoRA at the circuit-breakers paper's placement: rank 16 on every
                 projection (q, k, v, o, gate, up, down) of layers 0..--last-layer
    loreft       pyreft's LoreftIntervention at the breaker's sites (the o_proj input of the
                 traced heads' layers, the down_proj input of the traced MLPs), every position

    .venv-peers/bin/python bench/breaker_peers.py --hf DIR --data data.json --method peft-lora \\
        --steps 60 --lr 1e-3 --out result.json

Loss, as scalpel's breaker is trained: mean H² + λ·KL, H = logit(stereotyped) − logit(anti) at the
prompt's last position, KL(original ‖ edited) of the next-token distributions at every position of
the preserve text. AdamW (no weight decay), linear warm-up then cosine to lr/10, clipping at 1.0,
batches drawn from a seeded permutation.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def pad(rows):
    n = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


class Method:
    """logits(ids, mask) with the method's edit, reference logits without it, trainable parameters."""

    def __init__(self, hf, name, args, data):
        self.name, self.hf = name, hf
        self.params = []
        torch.manual_seed(args.seed)  # the adapters' initialization (LoRA's A, LoReFT's R and W)
        if name == "base":
            self.model = hf
        elif name == "scalpel":
            import peft
            self.model = peft.PeftModel.from_pretrained(hf, args.adapter).eval()
        elif name == "peft-lora":
            import peft
            cfg = peft.LoraConfig(r=args.rank, lora_alpha=args.rank, lora_dropout=0.0,
                                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"],
                                  layers_to_transform=list(range(args.last_layer + 1)))
            self.model = peft.get_peft_model(hf, cfg)
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        elif name == "loreft":
            import pyreft
            # pyvene writes an input intervention in place, and o_proj's input is a view of the
            # attention kernel's output that autograd still needs: each intervened matrix is wrapped
            # as Sequential(copy, matrix) and pyvene hooks the matrix's input, the copy.
            class Copy(torch.nn.Module):
                def forward(self, x):
                    return x.clone()

            cfgd = hf.config
            sites = [(layer, "self_attn", "o_proj", cfgd.num_attention_heads * cfgd.head_dim)
                     for layer in sorted({h[0] for h in data["sites"]["heads"]})]
            sites += [(layer, "mlp", "down_proj", cfgd.intermediate_size) for layer in data["sites"]["mlps"]]
            reps = []
            for layer, block, name, dim in sites:
                parent = getattr(hf.model.layers[layer], block)
                setattr(parent, name, torch.nn.Sequential(Copy(), getattr(parent, name)))
                reps.append({"layer": layer, "component": f"model.layers[{layer}].{block}.{name}[1].input",
                             "low_rank_dimension": args.rank,
                             "intervention": pyreft.LoreftIntervention(embed_dim=dim, low_rank_dimension=args.rank,
                                                                       dtype=torch.float32)})
            self.model = pyreft.get_reft_model(hf, pyreft.ReftConfig(representations=reps))
            self.n_interventions = len(reps)
            self.params = [p for p in self.model.parameters() if p.requires_grad]
        else:
            raise ValueError(f"--method: expected base, scalpel, peft-lora or loreft, got {name!r}")

    def logits(self, ids, mask):
        if self.name == "loreft":
            pos = [list(range(ids.shape[1]))] * ids.shape[0]  # every position (right padding: harmless)
            _, out = self.model({"input_ids": ids, "attention_mask": mask},
                                unit_locations={"sources->base": (None, [pos] * self.n_interventions)})
            return out.logits
        return self.model(input_ids=ids, attention_mask=mask).logits

    @torch.no_grad()
    def reference(self, ids, mask):
        """The logits without the edit (peft injects its layers into hf: switch them off)."""
        if self.name in ("peft-lora", "scalpel"):
            with self.model.disable_adapter():
                return self.model(input_ids=ids, attention_mask=mask).logits
        return self.hf(input_ids=ids, attention_mask=mask).logits  # pyvene's hooks live only inside its own calls


def harm(method, rows):
    """H per row: logit(harmful) − logit(neutral) at the prompt's last position."""
    ids, mask = pad([r["prompt"] for r in rows])
    logits = method.logits(ids, mask)
    last = mask.sum(1) - 1
    at = logits[torch.arange(len(rows)), last]
    return at[torch.arange(len(rows)), torch.tensor([r["harmful"] for r in rows])] - \
        at[torch.arange(len(rows)), torch.tensor([r["neutral"] for r in rows])]


def seq_kl(logits, ref, mask):
    """KL(ref ‖ logits) per row, the mean over its real positions."""
    lq = ref.log_softmax(-1)
    kl = (lq.exp() * (lq - logits.log_softmax(-1))).sum(-1)
    m = mask.float()
    return (kl * m).sum(1) / m.sum(1)


@torch.no_grad()
def measure(method, data, wiki=True):
    method.model.eval()
    h = torch.cat([harm(method, data["held"][i:i + 32]) for i in range(0, len(data["held"]), 32)])
    male = torch.tensor([r["stereotype"] == "male" for r in data["held"]])
    he_minus_she = torch.where(male, h, -h)
    ids, mask = pad(data["neutral_eval"])
    kl = seq_kl(method.logits(ids, mask), method.reference(ids, mask), mask)
    out = {"mean_abs_H": float(h.abs().mean()), "mean_bias": float(h.mean()),
           "gap": float(he_minus_she[male].mean() - he_minus_she[~male].mean()),
           "frac_positive": float((h > 0).float().mean()), "neutral_kl_mean": float(kl.mean()),
           "neutral_kl_max": float(kl.max())}
    if wiki and data["wiki"]:
        nll, n = 0.0, 0
        for i in range(0, len(data["wiki"]), 4):
            ids, mask = pad(data["wiki"][i:i + 4])
            lp = method.logits(ids, mask).log_softmax(-1)[:, :-1]
            tok = lp.gather(-1, ids[:, 1:, None])[..., 0]
            m = mask[:, 1:].float()
            nll -= float((tok * m).sum())
            n += int(m.sum())
        out["wikitext_ppl"] = math.exp(nll / n)
    return out


def train(method, data, args):
    opt = torch.optim.AdamW(method.params, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    order, pres_order = [], []
    pres_ids, pres_mask = pad(data["preserve"])
    with torch.no_grad():
        pres_ref = method.reference(pres_ids, pres_mask)
    curve = []
    t0 = time.perf_counter()
    for step in range(args.steps):
        if len(order) < args.batch_size:
            order += torch.randperm(len(data["train"]), generator=g).tolist()
        if len(pres_order) < args.preserve_batch_size:
            pres_order += torch.randperm(len(data["preserve"]), generator=g).tolist()
        rows = [data["train"][i] for i in order[:args.batch_size]]
        order = order[args.batch_size:]
        pi = torch.tensor(pres_order[:args.preserve_batch_size])
        pres_order = pres_order[args.preserve_batch_size:]
        if step < args.warmup:
            lr = args.lr * (step + 1) / args.warmup
        else:
            t = (step - args.warmup) / max(1, args.steps - args.warmup)
            lr = args.lr / 10 + (args.lr - args.lr / 10) * 0.5 * (1 + math.cos(math.pi * t))
        for group in opt.param_groups:
            group["lr"] = lr
        method.model.train()
        opt.zero_grad()
        h = harm(method, rows)
        l_harm = (h ** 2).mean()
        kl = seq_kl(method.logits(pres_ids[pi], pres_mask[pi]), pres_ref[pi], pres_mask[pi]).mean()
        loss = l_harm + args.lambda_preserve * kl
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{method.name}: loss {float(loss)} at step {step + 1}")
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(method.params, 1.0)
        opt.step()
        loss, l_harm, kl = float(loss.detach()), float(l_harm.detach()), float(kl.detach())
        curve.append({"step": step + 1, "loss": loss, "harm": l_harm, "preserve": kl, "lr": lr, "grad_norm": float(gn)})
        if (step + 1) % 10 == 0 or step + 1 == args.steps:
            print(f"[{method.name}] step {step + 1}/{args.steps} loss {loss:.4f} "
                  f"(H² {l_harm:.4f}, KL {kl:.5f}) {time.perf_counter() - t0:.0f}s", flush=True)
    return curve, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True, help="the transformers directory of the model")
    ap.add_argument("--data", required=True, help="data.json written by bench_breaker_peers.py")
    ap.add_argument("--method", required=True, choices=["base", "scalpel", "peft-lora", "loreft"])
    ap.add_argument("--adapter", default="", help="the PEFT directory of scalpel's breaker (--method scalpel)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--last-layer", type=int, default=17)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--preserve-batch-size", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--lambda-preserve", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers
    with open(args.data) as f:
        data = json.load(f)
    hf = transformers.AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32).eval()
    for p in hf.parameters():
        p.requires_grad_(False)
    method = Method(hf, args.method, args, data)
    res = {"method": args.method, "trainable": sum(p.numel() for p in method.params)}
    if method.params:
        res["curve"], res["train_seconds"] = train(method, data, args)
        res.update(steps=args.steps, lr=args.lr, rank=args.rank)
    res["held_out"] = measure(method, data)
    print(json.dumps({k: v for k, v in res.items() if k != "curve"}, indent=1), flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
