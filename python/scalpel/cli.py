"""The `scalpel` command line.

    scalpel demo [--model NAME|GGUF|DIR] [-n N]  the main job (see README)
    scalpel convert MODEL.gguf OUT_DIR [--dtype bfloat16|float32]
    scalpel inspect PATH                         a checkpoint's config, tensors and tokenizer
    scalpel tokenize --model PATH TEXT           ids and tokens of TEXT
    scalpel chat --model PATH --prompt TEXT      the chat-template rendering of one user turn
    scalpel generate --model PATH --prompt TEXT [--chat] [--max-new-tokens N] [--sample --temperature T --seed S]
    scalpel eval --model PATH [--reference PATH] [--direction scalpel_edit.json --gamma G] [--organism refusal]
                 [--harmful FILE --harmless FILE] [-n N] [--out DIR]
                                                 refusal, over-refusal, first-token KL, WikiText-2 / GSM8K / MBPP perplexity
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .mainjob import REPO, table


def cmd_demo(args: argparse.Namespace) -> int:
    from . import mainjob

    mainjob.run(args.model, out=args.out, n=args.n, max_new_tokens=args.max_new_tokens,
                sets=tuple(args.sets.split(",")), dtype=args.dtype)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import scalpel

    t0 = time.perf_counter()
    scalpel.convert_gguf(args.gguf, args.out_dir, dtype=args.dtype, overwrite=args.overwrite)
    print(f"wrote {args.out_dir} ({args.dtype}) in {time.perf_counter() - t0:.1f} s:")
    for f in sorted(Path(args.out_dir).iterdir()):
        print(f"  {f.name:28s} {f.stat().st_size / 2**20:9.2f} MiB")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import scalpel

    path = Path(args.path)
    if path.suffix == ".gguf":
        f = scalpel.GGUFFile(str(path))
        meta = [[k, json.dumps(v)[:100] if not isinstance(v, list) or len(v) <= 8 else f"[{len(v)} items]"]
                for k, v in f.metadata().items()]
        print(table(meta, ["key", "value"]))
        rows = [[t.name, t.type, "x".join(map(str, t.shape)), t.nbytes] for t in f.tensors()]
        print(table(rows, ["tensor", "type", "shape", "bytes"]))
        print(f"GGUF v{f.version}, {len(rows)} tensors, {f.file_size / 2**20:.2f} MiB")
        return 0
    if path.is_dir() and (path / "config.json").exists():
        model = scalpel.HFModelDir.open(str(path))
        print(repr(model.config))
        ck = model.weights
    else:
        ck = scalpel.SafetensorsCheckpoint.open(str(path))
    rows = [[k, ck.info(k).dtype, "x".join(map(str, ck.info(k).shape)) or "scalar", ck.info(k).nbytes]
            for k in ck.keys()]
    print(table(rows, ["tensor", "dtype", "shape", "bytes"]))
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


def _prompt_file(path: str, n: int) -> list[str]:
    """Prompts from a .txt (one per line), .json (list of strings or of {"instruction"|"prompt"|"goal"}) or .jsonl."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"prompt file {p} not found")
    if p.suffix == ".txt":
        rows = [x for x in p.read_text().splitlines() if x.strip()]
    else:
        from . import _scalpel

        rows = _scalpel.read_rows(str(p))  # the one row reader (.json list or JSONL)
    out = []
    for r in rows:
        if isinstance(r, dict):
            key = next((k for k in ("instruction", "prompt", "goal", "text") if k in r), None)
            if key is None:
                raise ValueError(f"{p}: expected rows with one of instruction / prompt / goal / text, got keys {sorted(r)}")
            r = r[key]
        out.append(str(r))
    return out[:n]


def _eval_tasks(args: argparse.Namespace, model) -> int:
    """lm-eval tasks (the offline scalpel_* ones, or any lm-eval knows) on the model through ScalpelLM,
    with an intervention file and / or a direction ablation attached."""
    import contextlib

    import lm_eval
    import torch

    import scalpel
    from .lm_eval import ScalpelLM, task_manager

    with contextlib.ExitStack() as stack:
        if args.intervention:
            stack.enter_context(scalpel.load_intervention(args.intervention).attach(model))
        if args.direction:
            d = json.loads(Path(args.direction).read_text())
            if "direction" not in d:
                raise ValueError(f"{args.direction}: expected a scalpel_edit.json with a 'direction' list")
            stack.enter_context(scalpel.ablate_direction(model, torch.tensor(d["direction"], dtype=torch.float32),
                                                         args.gamma, int(d.get("from_layer", 0))))
        lm = ScalpelLM(model=model, batch_size=args.batch_size, progress=True)
        t0 = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=[t for t in args.tasks.split(",") if t],
                                      num_fewshot=args.num_fewshot, limit=args.limit,
                                      task_manager=task_manager(args.data), bootstrap_iters=args.bootstrap)
    rows = []
    for task, metrics in out["results"].items():
        for key, value in metrics.items():
            if key == "alias" or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            err = metrics.get(f"{metric}_stderr,{key.split(',', 1)[1]}" if "," in key else "")
            rows.append([task, metric, f"{value:.4f}", f"{err:.4f}" if isinstance(err, float) else "",
                         out["n-samples"].get(task, {}).get("effective", "")])
    head = ["task", "metric", "value", "stderr", "items"]
    print(table(rows, head))
    print(f"{time.perf_counter() - t0:.1f} s")
    if args.out:
        from . import _scalpel  # the one atomic writer

        dest = Path(args.out)
        dest.mkdir(parents=True, exist_ok=True)
        summary = {"model": args.model, "intervention": args.intervention, "direction": args.direction,
                   "tasks": args.tasks, "limit": args.limit, "num_fewshot": args.num_fewshot,
                   "results": out["results"], "n-samples": out["n-samples"], "configs": out["configs"]}
        _scalpel.write_file_atomic(str(dest / "eval.json"), json.dumps(summary, indent=1, default=str) + "\n")
        _scalpel.write_file_atomic(str(dest / "eval.md"), f"# scalpel eval: {args.model}\n\n" + table(rows, head) + "\n")
        print(f"wrote {dest / 'eval.json'} and {dest / 'eval.md'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """The evaluation battery on one model, optionally with a direction ablated at inference time."""
    import torch

    import scalpel
    from . import sra

    model = scalpel.load(args.model, dtype="float32")
    if args.tasks:
        return _eval_tasks(args, model)
    tok = model.tokenizer
    if args.organism:
        from . import organisms as O

        fmt, judge = O.chat_prompt, O.refusal_judge
        E = O.refusal_eval()
        harmful = [q for q, _ in E["harmful_questions"] + E["harmful_commands"]]
        harmless = [q for q, _ in E["harmless_commands"] + E["harmless_questions"]]
    else:
        fmt, judge = sra.chat_formatter(model), None
        from .mainjob import load_prompt_set  # the demo's named sets (refusal_direction splits)

        harmful = _prompt_file(args.harmful, args.n) if args.harmful else load_prompt_set("harmful", args.n)[0]
        harmless = _prompt_file(args.harmless, args.n) if args.harmless else load_prompt_set("harmless", args.n)[0]
    B = sra.encode_prompts(model, harmless, fmt)
    reference = scalpel.load(args.reference, dtype="float32") if args.reference else (model if args.direction else None)
    ref_logits = scalpel.last_logits(reference, B) if reference is not None else None
    texts, solutions = None, {}
    try:
        texts = sra.wikitext2(tok, n=args.texts, seq_len=args.seq_len)
        solutions = {"gsm8k": sra.gsm8k(args.n), "mbpp": sra.mbpp(args.n)}
    except FileNotFoundError as e:
        print(f"scalpel eval: skipping perplexities ({e})", file=sys.stderr)
    handle = None
    if args.direction:
        d = json.loads(Path(args.direction).read_text())
        if "direction" not in d:
            raise ValueError(f"{args.direction}: expected a scalpel_edit.json with a 'direction' list")
        handle = scalpel.ablate_direction(model, torch.tensor(d["direction"], dtype=torch.float32), args.gamma,
                                          int(d.get("from_layer", 0)))
    try:
        t0 = time.perf_counter()
        res = sra.evaluate(model, harmful, harmless, fmt, reference_logits=ref_logits, texts=texts,
                           solutions=solutions, max_new_tokens=args.max_new_tokens, judge=judge)
    finally:
        if handle is not None:
            handle.remove()
    res["seconds"] = time.perf_counter() - t0
    res["model"], res["n_harmful"], res["n_harmless"] = args.model, len(harmful), len(harmless)
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in res.items() if k != "examples"]
    print(table(rows, ["metric", "value"]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from . import _scalpel  # the one atomic writer

        _scalpel.write_file_atomic(str(out / "eval.json"), json.dumps(res, indent=1) + "\n")
        _scalpel.write_file_atomic(str(out / "eval.md"), f"# scalpel eval: {args.model}\n\n" + table(rows, ["metric", "value"]) + "\n")
        print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:  # lm-eval's own command line, with model "scalpel" and the scalpel_* tasks
        from .lm_eval import cli

        return cli(argv[1:])
    p = argparse.ArgumentParser(prog="scalpel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job and write a report under runs/")
    d.add_argument("--model", default="gemma3-270m",
                   help="packaged model name, GGUF file or Hugging Face directory (default: gemma3-270m)")
    d.add_argument("--out", default=str(REPO / "runs"), help="where the run directory goes")
    d.add_argument("-n", type=int, default=16, help="prompts per set")
    d.add_argument("--sets", default="harmful,harmless",
                   help="comma-separated prompt sets: harmful, harmless, jbb_harmful, jbb_benign")
    d.add_argument("--max-new-tokens", type=int, default=48)
    d.add_argument("--dtype", default=None, help="float32 (default for GGUF) or bfloat16")
    d.set_defaults(func=cmd_demo)
    v = sub.add_parser("convert", help="write a Hugging Face directory for a GGUF model")
    v.add_argument("gguf", help="the .gguf file")
    v.add_argument("out_dir", help="the directory to create")
    v.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    v.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    v.set_defaults(func=cmd_convert)
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
    e = sub.add_parser("eval", help="refusal, over-refusal, first-token KL and perplexities of a model")
    e.add_argument("--model", required=True, help="packaged model name, GGUF file or Hugging Face directory")
    e.add_argument("--reference", help="the unedited model, for first-token KL (default: --model without the edit)")
    e.add_argument("--direction", help="a scalpel_edit.json whose direction is ablated at inference time")
    e.add_argument("--gamma", type=float, default=1.0, help="ablation strength for --direction")
    e.add_argument("--organism", action="store_true", help="the refusal organism's held-out sets and chat format")
    e.add_argument("--harmful", help="prompt file (.txt/.json/.jsonl); default refusal_direction harmful_train")
    e.add_argument("--harmless", help="prompt file; default refusal_direction harmless_val")
    e.add_argument("-n", type=int, default=32, help="prompts per set and solutions per benchmark")
    e.add_argument("--texts", type=int, default=32, help="WikiText-2 windows")
    e.add_argument("--seq-len", type=int, default=128, help="tokens per WikiText-2 window")
    e.add_argument("--max-new-tokens", type=int, default=24)
    e.add_argument("--out", help="directory for eval.json and eval.md")
    e.add_argument("--tasks", help="comma-separated lm-eval tasks (e.g. scalpel_hellaswag,scalpel_mmlu): run them "
                   "through lm-evaluation-harness with ScalpelLM instead of the refusal battery")
    e.add_argument("--intervention", help="an intervention file (scalpel.save_intervention) attached during --tasks")
    e.add_argument("--limit", type=float, default=None, help="items per task (a fraction when < 1), for --tasks")
    e.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples, for --tasks")
    e.add_argument("--batch-size", type=int, default=16, help="rows per forward pass, for --tasks")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap iterations for stderr, for --tasks")
    e.add_argument("--data", default=None, help="the data folder of the scalpel_* tasks (default: $SCALPEL_DATA, "
                   "else ../shared/data beside the repository)")
    e.set_defaults(func=cmd_eval)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"scalpel: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
