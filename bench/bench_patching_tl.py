"""TransformerLens side of the patching benchmark (bench_patching.py): the same z sweep done TL's
way, `transformer_lens.patching.get_act_patch_attn_head_out_by_pos` (one full forward per patch,
a hook on blocks.L.attn.hook_z), on the same model, tokens and metric, checked against scalpel.

TransformerLens lives in its own venv so the project .venv stays untouched (pins in
bench/requirements-tl.txt; no CUDA packages; torch stays the 2.13.0 CPU wheel):

    python3 -m venv .venv-tl
    .venv-tl/bin/pip install -r bench/requirements-tl.txt
    # (equivalently: .venv-tl/bin/pip install torch==2.13.0 numpy==2.4.6 transformers==5.23.0 \\
    #    tokenizers==0.23.3 safetensors==0.8.0 huggingface_hub==2.4.0 transformer_lens==4.3.0)
    .venv-tl/bin/python bench/bench_patching_tl.py [--threads 2] [--layer 0] [--positions 8]

scalpel is imported in the same process from python/ (the compiled module is CPython 3.11 and
built against torch 2.13.0, which this venv has too), so it needs a built python/scalpel.

TransformerLens 4.x removed HookedTransformer; its model class is TransformerBridge, which wraps
the HF model and, as booted here (boot_transformers, no enable_compatibility_mode), keeps the raw
HF weights (no fold_ln / centering), so hook_z is the same quantity as scalpel's z ([batch, pos,
heads, d_head]). The model is built offline: random weights with Qwen2.5-0.5B's shape
(torch.manual_seed(0), config from ../shared/tokenizers, exactly as in bench_patching.py), saved
to a temporary directory and booted from there (HF_HUB_OFFLINE=1).

TL's utility runs one forward per patch, every patch costing the same, so it is timed on
--positions positions (the last ones) x all heads of --layer, selected with its index_df
argument, and scaled to all 24 x 14 x 32 = 10,752 patches. Its scores there are compared with
scalpel.patch_sweep restricted to that layer. Single forwards (scalpel, HF, TL) are timed
interleaved in the same run, so the per-patch cost can also be read in scalpel forwards, which is
robust to other load on the machine: one scalpel forward is also timed between TL's calls (one
call per position), the median of all of them is the unit, and the load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from patching_task import patching_pair, save_random_qwen

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--layer", type=int, default=0)
    ap.add_argument("--positions", type=int, default=8, help="last N positions x all heads of --layer are timed")
    ap.add_argument("--forward-repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shared", default=os.environ.get("SCALPEL_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--out", default=str(REPO / "docs" / "results" / "bench_patching_tl.json"))
    args = ap.parse_args()
    import pandas as pd
    import torch
    import transformers
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge

    import scalpel

    torch.set_num_threads(args.threads)
    scalpel.set_log_level("warn")
    tok_dir = Path(args.shared) / "tokenizers" / "qwen2.5-0.5b-instruct"
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = save_random_qwen(args.shared, tmp)
        model = scalpel.load(tmp, dtype="float32")
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
        bridge = TransformerBridge.boot_transformers(tmp, tokenizer=tokenizer, dtype=torch.float32, device="cpu")
    bridge.eval()
    clean, corrupted, metric = patching_pair(cfg.vocab_size, args.tokens)  # scalpel: [variants, pos, vocab] -> [variants]

    def tl_metric(logits):  # TL (reduce="scalar"): [1, pos, vocab] -> scalar
        return metric(logits).sum()

    n_layers, heads = cfg.num_hidden_layers, cfg.num_attention_heads
    with torch.no_grad():
        # Logits: TL vs HF (default sdpa attention; TL forces eager) and vs scalpel.
        tl_logits, hf_logits, sc_logits = bridge(clean), hf(clean).logits, model(clean)
        logits_tl_vs_hf = (tl_logits - hf_logits).abs().max().item()
        logits_tl_vs_scalpel = (tl_logits - sc_logits).abs().max().item()
        # One forward each, interleaved, median of --forward-repeats.
        times = {"scalpel": [], "hf": [], "tl": []}
        for _ in range(args.forward_repeats):
            for name, fn in (("scalpel", lambda: model(corrupted)), ("hf", lambda: hf(corrupted)),
                             ("tl", lambda: bridge(corrupted))):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        fwd = {k: statistics.median(v) for k, v in times.items()}

        _, clean_cache = bridge.run_with_cache(clean)
        positions = list(range(args.tokens - args.positions, args.tokens))
        index_df = pd.DataFrame([(args.layer, p, h) for p in positions for h in range(heads)],
                                columns=["layer", "pos", "head"])
        # TL's utility, called once per position (14 patches each), with one scalpel forward timed
        # between calls, so the forward time used for normalising tracks the load during the sweep.
        load_before = os.getloadavg()[0]
        tl_part_s, chunks = 0.0, []
        for p in positions:
            rows = index_df[index_df["pos"] == p].reset_index(drop=True)
            t = time.perf_counter()
            chunks.append(patching.get_act_patch_attn_head_out_by_pos(
                bridge, corrupted, clean_cache, tl_metric, index_axis_names=None, index_df=rows))
            tl_part_s += time.perf_counter() - t
            t = time.perf_counter()
            model(corrupted)
            times["scalpel"].append(time.perf_counter() - t)
        tl_scores = torch.cat(chunks)
        load_after = os.getloadavg()[0]
        fwd["scalpel"] = statistics.median(times["scalpel"])

    fast = scalpel.patch_sweep(model, clean, corrupted, metric, component="z", batch_size=args.batch_size,
                               last_position_only=True, layers=[args.layer])
    ref = torch.stack([fast.scores[0, h, p] for p in positions for h in range(heads)])  # scores: [layer, head, pos]
    max_diff = (tl_scores.float() - ref.float()).abs().max().item()

    n_part = len(index_df)
    patches = n_layers * heads * args.tokens
    per_patch = tl_part_s / n_part
    tl_all_s = per_patch * patches
    res = {"threads": args.threads, "model": "random Qwen2.5-0.5B shape", "tokens": args.tokens, "patches": patches,
           "transformer_lens": version("transformer_lens"), "torch": torch.__version__,
           "transformers": transformers.__version__,
           "tl_method": "transformer_lens.patching.get_act_patch_attn_head_out_by_pos (TransformerBridge, no processing)",
           "tl_measured_layer": args.layer, "tl_measured_positions": positions, "tl_measured_patches": n_part,
           "tl_measured_s": tl_part_s, "tl_per_patch_s": per_patch, "tl_all_patches_s": tl_all_s,
           "one_forward_s": {"scalpel": fwd["scalpel"], "hf_sdpa": fwd["hf"], "tl_bridge": fwd["tl"]},
           "scalpel_forward_samples": len(times["scalpel"]),
           "tl_per_patch_scalpel_forwards": per_patch / fwd["scalpel"],
           "tl_all_patches_scalpel_forward_equivalents": tl_all_s / fwd["scalpel"],
           "max_abs_score_diff_vs_scalpel": max_diff, "max_abs_logits_diff_tl_vs_hf": logits_tl_vs_hf,
           "max_abs_logits_diff_tl_vs_scalpel": logits_tl_vs_scalpel,
           "loadavg_1min_before_after": [load_before, load_after]}
    # The same forward-equivalents at the forward speed bench_patching.py measured (its table).
    ref_json = REPO / "docs" / "results" / "bench_patching.json"
    if ref_json.exists():
        ref_fwd = json.loads(ref_json.read_text())["one_forward_s"]
        res["bench_patching_one_forward_s"] = ref_fwd
        res["tl_all_patches_s_at_bench_patching_forward_speed"] = tl_all_s / fwd["scalpel"] * ref_fwd
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(f"\n| TransformerLens {res['transformer_lens']} get_act_patch_attn_head_out_by_pos (one forward per patch; "
          f"{n_part} timed: {tl_part_s:.1f} s, scaled x{patches / n_part:g}) | {tl_all_s:,.1f} | "
          f"{tl_all_s / fwd['scalpel']:,.0f} |")
    print(f"TL scores vs scalpel: max |diff| {max_diff:.1e}; TL logits vs HF {logits_tl_vs_hf:.1e}, "
          f"vs scalpel {logits_tl_vs_scalpel:.1e}")


if __name__ == "__main__":
    sys.exit(main())
