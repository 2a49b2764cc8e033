"""The `scalpel` command line.

    scalpel demo [--model DIR] [--out runs/]     the main job (see README)
    scalpel inspect PATH                         a checkpoint's config, tensors and tokenizer
    scalpel tokenize --model PATH TEXT           ids and tokens of TEXT
    scalpel chat --model PATH --prompt TEXT      the chat-template rendering of one user turn
    scalpel generate --model PATH --prompt TEXT [--chat] [--max-new-tokens N] [--sample --temperature T --seed S]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path | None:
    """../shared (tests and demos only; the library never needs it)."""
    env = os.environ.get("SCALPEL_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


def default_model() -> Path:
    env = os.environ.get("SCALPEL_MODEL")
    if env:
        return Path(env)
    shared = shared_dir()
    if shared and (shared / "models" / "tinystories-656k").is_dir():
        return shared / "models" / "tinystories-656k"
    raise SystemExit(
        "scalpel: no model given and none found: pass --model DIR (a Hugging Face model directory) "
        "or set SCALPEL_MODEL or SCALPEL_SHARED"
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def load_prompt_sets(n: int) -> dict[str, list[str]]:
    """Harmless and harmful instructions: ../shared/data/refusal_direction when
    present, else the few the package ships."""
    shared = shared_dir()
    sets: dict[str, list[str]] = {}
    if shared:
        base = shared / "data" / "refusal_direction" / "splits"
        for name, file in (("harmless", "harmless_train.json"), ("harmful", "harmful_train.json")):
            if (base / file).is_file():
                sets[name] = [row["instruction"] for row in json.loads((base / file).read_text())[:n]]
    if len(sets) < 2:
        from . import data as _data

        sets = {"harmless": _data.HARMLESS[:n], "harmful": _data.HARMFUL[:n]}
    return sets


def cmd_demo(args: argparse.Namespace) -> int:
    import scalpel

    model_dir = Path(args.model) if args.model else default_model()
    out_root = Path(args.out)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_root / f"demo-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"scalpel {scalpel.__version__} — main job on {model_dir}")

    t0 = time.perf_counter()
    model = scalpel.HFModelDir.open(str(model_dir))
    load_s = time.perf_counter() - t0
    cfg = model.config
    weights = model.weights
    dtypes: dict[str, int] = {}
    for key in weights.keys():
        info = weights.info(key)
        dtypes[info.dtype] = dtypes.get(info.dtype, 0) + info.nbytes
    print(f"  opened in {load_s * 1e3:.1f} ms: {cfg!r}")

    report: dict = {
        "model": str(model_dir),
        "scalpel_version": scalpel.__version__,
        "config": {
            "architecture": cfg.architecture,
            "layers": cfg.num_hidden_layers,
            "d_model": cfg.hidden_size,
            "heads": cfg.num_attention_heads,
            "kv_heads": cfg.num_key_value_heads,
            "d_mlp": cfg.intermediate_size,
            "vocab": cfg.vocab_size,
            "tied_embeddings": cfg.tie_word_embeddings,
            "torch_dtype": cfg.torch_dtype,
        },
        "weights": {"tensors": len(weights), "bytes_by_dtype": dtypes, "files": weights.files()},
        "timing": {"open_ms": load_s * 1e3},
    }

    sets = load_prompt_sets(args.n)
    tok_rows = []
    report["tokenizer"] = {"description": "", "sets": {}}
    if model.has_tokenizer:
        tok = model.tokenizer
        report["tokenizer"]["description"] = tok.describe()
        for name, prompts in sets.items():
            t1 = time.perf_counter()
            encoded = tok.encode_batch(prompts, add_special_tokens=True)
            dt = time.perf_counter() - t1
            n_tokens = sum(len(e) for e in encoded)
            exact = sum(tok.decode(tok.encode(p, add_special_tokens=False)) == p for p in prompts)
            report["tokenizer"]["sets"][name] = {
                "prompts": len(prompts),
                "tokens": n_tokens,
                "mean_tokens": n_tokens / max(1, len(prompts)),
                "round_trip_exact": exact,
                "tokens_per_s": n_tokens / dt if dt > 0 else None,
            }
            tok_rows.append([name, len(prompts), n_tokens, f"{n_tokens / max(1, len(prompts)):.1f}",
                             f"{exact}/{len(prompts)}", f"{n_tokens / dt:,.0f}" if dt > 0 else "-"])
        example = sets["harmful"][0] if sets.get("harmful") else "Once upon a time"
        if tok.has_chat_template:
            rendered = tok.apply_chat_template([{"role": "user", "content": example}], add_generation_prompt=True)
        else:
            rendered = None
        report["chat_template"] = {"present": tok.has_chat_template, "example": rendered}
    # Generation with the hooked transformer.
    t2 = time.perf_counter()
    lm = scalpel.load(str(model_dir))
    report["timing"]["load_model_ms"] = (time.perf_counter() - t2) * 1e3
    gen_rows = []
    report["generation"] = {"samples": []}
    if lm.has_tokenizer:
        starts = ["Once upon a time", "Lily and Tom went to the park.", "The little dog was sad because"]
        t3 = time.perf_counter()
        outs = lm.generate(starts, max_new_tokens=args.max_new_tokens, return_result=True)
        dt = time.perf_counter() - t3
        n_new = sum(len(t) for t in outs.new_tokens)
        for prompt, new in zip(starts, outs.new_tokens):
            text = lm.tokenizer.decode(new, skip_special_tokens=True)
            report["generation"]["samples"].append({"prompt": prompt, "completion": text})
            gen_rows.append([prompt, text.replace("\n", " ")[:160]])
        report["generation"]["tokens_per_s"] = n_new / dt
        report["generation"]["note"] = ("greedy, batched with left padding and a KV cache; refusal rates on chat "
                                         "prompts arrive with the Gemma 3 main job")
    report["peak_rss_mib"] = peak_rss_mib()

    md = [f"# scalpel main job — {model_dir.name}", "", f"Run {stamp}, scalpel {scalpel.__version__}.", ""]
    md += ["## Model", "", _table([[k, str(v)] for k, v in report["config"].items()], ["field", "value"]), ""]
    md += ["## Weights", "", _table([[d, f"{b / 2**20:.2f} MiB"] for d, b in dtypes.items()], ["dtype", "bytes"]),
           "", f"{len(weights)} tensors, opened (memory-mapped, validated) in {load_s * 1e3:.1f} ms.", ""]
    if tok_rows:
        md += ["## Tokenizer", "", report["tokenizer"]["description"], "",
               _table(tok_rows, ["set", "prompts", "tokens", "mean", "decode(encode(x)) == x", "tokens/s"]), ""]
        md += ["## Chat template", ""]
        md += (["```", report["chat_template"]["example"], "```"] if report["chat_template"]["example"]
               else ["This model ships no chat template."])
        md += [""]
    md += ["## Generation", ""]
    if gen_rows:
        md += [_table(gen_rows, ["prompt", "greedy completion"]), "",
               f"{report['generation']['tokens_per_s']:.1f} new tokens/s; {report['generation']['note']}.", ""]
    md += [f"Peak RSS: {report['peak_rss_mib']:.0f} MiB.", ""]

    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (run_dir / "report.md").write_text("\n".join(md))
    print("\n".join(md))
    print(f"report: {run_dir / 'report.md'} and report.json")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import scalpel

    path = Path(args.path)
    if path.is_dir() and (path / "config.json").exists():
        model = scalpel.HFModelDir.open(str(path))
        print(repr(model.config))
        ck = model.weights
    else:
        ck = scalpel.SafetensorsCheckpoint.open(str(path))
    rows = [[k, ck.info(k).dtype, "x".join(map(str, ck.info(k).shape)) or "scalar", ck.info(k).nbytes]
            for k in ck.keys()]
    print(_table(rows, ["tensor", "dtype", "shape", "bytes"]))
    print(f"{len(rows)} tensors, {ck.total_bytes / 2**20:.2f} MiB, metadata {dict(ck.metadata)}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    import scalpel

    tok = scalpel.load_tokenizer(args.model)
    ids = tok.encode(args.text, add_special_tokens=not args.no_special)
    print(json.dumps({"ids": ids, "tokens": tok.convert_ids_to_tokens(ids)}, ensure_ascii=False))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    import scalpel

    tok = scalpel.load_tokenizer(args.model)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    sys.stdout.write(tok.apply_chat_template(messages, add_generation_prompt=True))
    sys.stdout.write("\n")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import scalpel

    t0 = time.perf_counter()
    model = scalpel.load(args.model, dtype=args.dtype)
    t1 = time.perf_counter()
    out = model.generate([args.prompt], max_new_tokens=args.max_new_tokens, chat=args.chat, do_sample=args.sample,
                         temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                         return_result=True)
    t2 = time.perf_counter()
    new = out.new_tokens[0]
    print(model.tokenizer.decode(new, skip_special_tokens=True))
    print(f"[{len(new)} tokens in {t2 - t1:.2f}s ({len(new) / max(t2 - t1, 1e-9):.1f} tok/s); "
          f"load {t1 - t0:.2f}s; {model.config!r}]", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scalpel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job and write a report under runs/")
    d.add_argument("--model", help="Hugging Face model directory (default: TinyStories-656K from ../shared)")
    d.add_argument("--out", default=str(REPO / "runs"), help="where the run directory goes")
    d.add_argument("-n", type=int, default=100, help="prompts per set")
    d.add_argument("--max-new-tokens", type=int, default=48)
    d.set_defaults(func=cmd_demo)
    i = sub.add_parser("inspect", help="config, tensors and metadata of a checkpoint")
    i.add_argument("path")
    i.set_defaults(func=cmd_inspect)
    t = sub.add_parser("tokenize", help="encode TEXT with a model's tokenizer")
    t.add_argument("--model", required=True)
    t.add_argument("--no-special", action="store_true", help="do not add special tokens (BOS ...)")
    t.add_argument("text")
    t.set_defaults(func=cmd_tokenize)
    c = sub.add_parser("chat", help="render one user turn with the model's chat template")
    c.add_argument("--model", required=True)
    c.add_argument("--prompt", required=True)
    c.add_argument("--system")
    c.set_defaults(func=cmd_chat)
    g = sub.add_parser("generate", help="generate a completion with a model")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template as a user turn")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: the checkpoint's)")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"scalpel: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
