"""Forward-pass benchmark: scalpel vs transformers (eager) on the same weights,
the same thread count, in one run.

    .venv/bin/python bench/bench_forward.py [--models qwen2.5-0.5b,gpt2] [--threads 2] [--out docs/results/bench_forward.json]

For each model: a random-weight checkpoint with the real shape (config.json from
../shared/tokenizers) is written once to a temp dir (fp32 safetensors); both
libraries load it. Measured: prefill tokens/s at 1x128 and 8x128, greedy decode
tokens/s (1 prompt of 128, 64 new tokens, KV cache), peak RSS after load (each
library in a fresh subprocess), scalpel with no-op Python hooks on every hook
point vs none, and the machine's fp32 GEMM GFLOP/s (2048^3 torch.mm) in the same
run. Contenders run in interleaved rounds (min of each), so drift in the
machine's speed hits them alike. Prints a Markdown table (for
docs/benchmarks.md) and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPES = {"qwen2.5-0.5b": "qwen2.5-0.5b-instruct", "gpt2": "gpt2-xl"}


def best_interleaved(fns, repeat=3):
    """Min time of each function over `repeat` rounds that run them in turn, so
    that drift in the machine's speed hits every contender alike."""
    for fn in fns:
        fn()
    times = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i] = min(times[i], time.perf_counter() - t)
    return times


def best(fn, repeat=3, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gemm_gflops(torch):
    """The machine's fp32 GEMM peak as torch reaches it: best over sizes."""
    rates = []
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        rates.append(2 * n**3 / best(lambda: torch.mm(a, b), repeat=5) / 1e9)
    return max(rates)


def make_checkpoint(name, shared, out):
    import torch
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(shared / "tokenizers" / SHAPES[name])
    if name == "gpt2":  # GPT-2 small: the XL config at small sizes
        cfg.n_embd, cfg.n_layer, cfg.n_head = 768, 12, 12
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    non_embed = n_params - sum(p.numel() for n, p in model.named_parameters() if "embed" in n or "wte" in n or "wpe" in n)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return n_params, non_embed, weight_bytes


RSS_SNIPPET = """
import sys, torch
torch.set_num_threads({threads})
def hwm():  # peak RSS of this process (VmHWM starts afresh at exec, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
if sys.argv[1] == "scalpel":
    import scalpel
    base = hwm()
    m = scalpel.load(sys.argv[2], dtype="float32")
    m(torch.tensor([[1, 2, 3]]))
else:
    import transformers
    import transformers.models.auto.modeling_auto  # noqa: F401  (imports before the baseline)
    base = hwm()
    m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        m(torch.tensor([[1, 2, 3]]))
print(hwm() - base)
"""


def peak_rss_mib(which, path, threads):
    out = subprocess.run([sys.executable, "-c", RSS_SNIPPET.format(threads=threads), which, str(path)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"peak RSS run of {which} failed:\n{out.stderr}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def bench_model(name, shared, threads, repeat):
    import torch
    import transformers

    import scalpel

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        n_params, non_embed, weight_bytes = make_checkpoint(name, shared, path)
        ours = scalpel.load(str(path), dtype="float32")
        hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                               attn_implementation="eager").eval()
        g = torch.Generator().manual_seed(0)
        vocab = ours.config.d_vocab
        r = {"model": name, "params": n_params, "weight_bytes": weight_bytes}
        for b in (1, 8):
            tokens = torch.randint(0, vocab, (b, 128), generator=g)

            def run_hf():
                with torch.no_grad():
                    hf(tokens)

            fns = [lambda: ours(tokens), run_hf]
            if b == 8:
                names = ours.hook_names()
                cheap = [n for n in names if not n.endswith(("hook_attn_scores", "hook_pattern", "hook_result"))]

                def with_hooks(selected):
                    def run():
                        with ours.hooks([(n, lambda x, hook: None) for n in selected]):
                            ours(tokens)
                    return run

                fns += [with_hooks(cheap), with_hooks(names)]
            times = best_interleaved(fns, repeat)
            t_ours, t_hf = times[0], times[1]
            r[f"prefill_{b}x128_tok_s"] = {"scalpel": b * 128 / t_ours, "transformers": b * 128 / t_hf}
            flops = 2 * non_embed * b * 128 + 2 * vocab * ours.config.d_model * b * 128
            r[f"prefill_{b}x128_gflops"] = flops / t_ours / 1e9
            if b == 8:
                r["hooks"] = {"hook_points": len(names), "noop_hooks_overhead": times[2] / t_ours - 1,
                              "noop_hooks_all_overhead": times[3] / t_ours - 1}
        prompt = torch.randint(0, vocab, (1, 128), generator=g)
        new = 64

        def gen_hf():
            with torch.no_grad():
                hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                            attention_mask=torch.ones_like(prompt), pad_token_id=0)

        t_ours, t_hf = best_interleaved([lambda: ours.generate(prompt, max_new_tokens=new, stop_tokens=[]), gen_hf], 2)
        r["decode_tok_s"] = {"scalpel": new / t_ours, "transformers": new / t_hf}
        del hf, ours
        r["peak_rss_mib"] = {"scalpel": peak_rss_mib("scalpel", path, threads),
                             "transformers": peak_rss_mib("transformers", path, threads)}
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="qwen2.5-0.5b,gpt2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shared", default=os.environ.get("SCALPEL_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "bench_forward.json"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    gemm = gemm_gflops(torch)
    results = {"threads": args.threads, "gemm_gflops": gemm, "torch": torch.__version__, "models": []}
    for name in args.models.split(","):
        print(f"benchmarking {name} ...", file=sys.stderr)
        results["models"].append(bench_model(name, Path(args.shared), args.threads, args.repeat))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")

    print(f"threads: {args.threads}; fp32 GEMM (best of 1024/2048/3072 torch.mm): {gemm:.1f} GFLOP/s\n")
    print("| model | metric | scalpel | transformers (eager) | ratio |")
    print("|---|---|---|---|---|")
    for r in results["models"]:
        m = r["model"]
        for key, label in (("prefill_1x128_tok_s", "prefill 1x128 tok/s"), ("prefill_8x128_tok_s", "prefill 8x128 tok/s"),
                           ("decode_tok_s", "decode tok/s (1 x 64 new)")):
            s, h = r[key]["scalpel"], r[key]["transformers"]
            print(f"| {m} | {label} | {s:.1f} | {h:.1f} | {s / h:.2f}x |")
        s, h = r["peak_rss_mib"]["scalpel"], r["peak_rss_mib"]["transformers"]
        wb = r["weight_bytes"] / 2**20
        print(f"| {m} | peak RSS after load (MiB; weights {wb:.0f}) | {s:.0f} ({s / wb:.2f}x) | {h:.0f} ({h / wb:.2f}x) | |")
        print(f"| {m} | prefill 8x128 GFLOP/s (% of GEMM) | {r['prefill_8x128_gflops']:.1f} "
              f"({100 * r['prefill_8x128_gflops'] / gemm:.0f}%) | | |")
        hk = r["hooks"]
        print(f"| {m} | no-op Python hooks on all {hk['hook_points']} points except scores/pattern/result "
              f"| {100 * hk['noop_hooks_overhead']:+.1f}% | | |")
        print(f"| {m} | ... on every point (explicit attention, per-head results) "
              f"| {100 * hk['noop_hooks_all_overhead']:+.1f}% | | |")


if __name__ == "__main__":
    main()
