"""Tokenizer throughput: scalpel vs Hugging Face `tokenizers` on the same files
and the same text, single-threaded, in one run.

    .venv/bin/python bench/bench_tokenizer.py [--shared ../shared] [--repeat 3]

Text: WikiText-2 test (raw) from ../shared/data, split into lines as a
research script would feed it (encode_batch of non-empty lines), plus the
whole text as one string. Prints a Markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers' batch parallelism off: same thread count
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import scalpel  # noqa: E402
from tokenizers import Tokenizer as HFTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("SCALPEL_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    shared = Path(args.shared)
    text = (shared / "data" / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    nbytes = len(text.encode())
    files = {
        "GPT-2 (byte-level)": shared / "tokenizers" / "gpt2-xl" / "tokenizer.json",
        "Llama-2 (SentencePiece BPE)": shared / "tokenizers" / "llama-2-7b-hf" / "tokenizer.json",
        "Mistral v0.3 (Metaspace)": shared / "tokenizers" / "mistral-7b-instruct-v0.3" / "tokenizer.json",
        "SmolLM2 (byte-level + digits)": shared / "tokenizers" / "smollm2-135m-instruct" / "tokenizer.json",
    }
    print(f"text: WikiText-2 test, {nbytes / 1e6:.2f} MB, {len(lines)} lines; best of {args.repeat}\n")
    print("| tokenizer | scalpel batch MB/s | HF batch MB/s | scalpel/HF | ids identical |")
    print("|---|---|---|---|---|")
    for name, path in files.items():
        ours = scalpel.load_tokenizer(str(path))
        ref = HFTokenizer.from_file(str(path))
        t_ours, ids_ours = best_of(lambda: ours.encode_batch(lines, add_special_tokens=False), args.repeat)
        t_ref, enc = best_of(lambda: ref.encode_batch(lines, add_special_tokens=False), args.repeat)
        same = ids_ours == [e.ids for e in enc]
        mb = nbytes / 1e6
        print(f"| {name} | {mb / t_ours:.1f} | {mb / t_ref:.1f} | {t_ref / t_ours:.2f}x | {same} |")


if __name__ == "__main__":
    main()
