"""scalpel's log-likelihood engine vs lm-evaluation-harness's own `hf` backend, side by side in one run:
the same Gemma 3 270M weights (float32; transformers with its default attention), the same threads, the same
lm-eval requests (built by lm_eval.simple_evaluate from the offline scalpel_* tasks), the same batch size.

    .venv/bin/python bench/bench_loglikelihood.py [--threads 2] [--batch-size 8] \
        [--tasks scalpel_mmlu:5:2 scalpel_hellaswag:0:40] [--out docs/results/bench_loglikelihood.json]

Each task is NAME:FEWSHOT:LIMIT (LIMIT items per subtask; scalpel_mmlu has 57 subtasks). Only the time
inside the model's loglikelihood calls counts (task building is the same code for both). Reported:
items/s for both, the ratio, the largest per-request |difference| of the log-likelihoods and the
number of items whose chosen answer differs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def timed(lm):
    """Wraps lm.loglikelihood to add its wall time to lm.seconds."""
    inner = lm.loglikelihood
    lm.seconds = 0.0

    def run(requests, disable_tqdm=False):
        t0 = time.perf_counter()
        out = inner(requests, disable_tqdm=True)
        lm.seconds += time.perf_counter() - t0
        return out

    lm.loglikelihood = run
    return lm


def evaluate(lm, task, fewshot, limit, data):
    import lm_eval
    from scalpel.lm_eval import task_manager

    lm.seconds = 0.0
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=fewshot, limit=limit, log_samples=True,
                                  bootstrap_iters=0, task_manager=task_manager(data))
    items = {(name, s["doc_id"]): [float(r[0][0]) for r in s["resps"]]
             for name, samples in out["samples"].items() for s in samples}
    return items, lm.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tasks", nargs="+", default=["scalpel_mmlu:5:2", "scalpel_hellaswag:0:40"])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "docs/results/bench_loglikelihood.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import transformers
    from lm_eval.models.huggingface import HFLM

    import scalpel
    from scalpel.lm_eval import ScalpelLM

    gguf = scalpel.packaged_model_path()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    theirs = timed(HFLM(pretrained=hf_model, tokenizer=hf_tok, batch_size=args.batch_size, device="cpu"))
    ours = timed(ScalpelLM(pretrained="gemma3-270m", batch_size=args.batch_size))

    results = {"threads": args.threads, "batch_size": args.batch_size, "model": "gemma3-270m (float32)",
               "torch": torch.__version__, "tasks": {}}
    for spec in args.tasks:
        name, fewshot, limit = spec.split(":")
        fewshot, limit = int(fewshot), int(limit)
        a, ta = evaluate(ours, name, fewshot, limit, args.data)
        b, tb = evaluate(theirs, name, fewshot, limit, args.data)
        assert a.keys() == b.keys()
        diff = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
        flips = [k for k in a if max(range(len(a[k])), key=a[k].__getitem__) != max(range(len(b[k])), key=b[k].__getitem__)]
        row = {"fewshot": fewshot, "items": len(a), "requests": sum(len(v) for v in a.values()),
               "scalpel_s": round(ta, 2), "hf_s": round(tb, 2),
               "scalpel_items_per_s": round(len(a) / ta, 3), "hf_items_per_s": round(len(b) / tb, 3),
               "speedup": round(tb / ta, 2), "max_abs_diff": diff, "answer_flips": len(flips)}
        results["tasks"][spec] = row
        print(f"{spec}: {row}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
