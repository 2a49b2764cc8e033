"""The main job (`scalpel demo`, `make demo`): load the default model, answer
harmful and harmless requests in its chat format, judge refusals, and write a
report (JSON + Markdown + a plot) under runs/. Later work extends it into the
full trace -> clean -> intervene -> evaluate pipeline.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import resource
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path | None:
    """../shared (tests and demos only; the library never needs it)."""
    env = os.environ.get("SCALPEL_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def table(rows: list[list], header: list[str]) -> str:
    """A Markdown table."""
    rows = [[str(x).replace("|", "\\|") for x in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


# name -> (description, loader); each loader returns instructions from ../shared/data.
def _json_instructions(rel: str):
    def load(shared: Path) -> list[str]:
        from . import _scalpel

        return [row["instruction"] for row in _scalpel.read_rows(str(shared / "data" / rel))]
    return load


def _csv_column(rel: str, column: str):
    def load(shared: Path) -> list[str]:
        with (shared / "data" / rel).open(newline="") as f:
            return [row[column] for row in csv.DictReader(f)]
    return load


PROMPT_SETS = {
    "harmful": ("refusal_direction harmful_train (AdvBench, MaliciousInstruct, TDC 2023)",
                _json_instructions("refusal_direction/splits/harmful_train.json")),
    "harmless": ("refusal_direction harmless_val (Alpaca instructions)",
                 _json_instructions("refusal_direction/splits/harmless_val.json")),
    "jbb_harmful": ("JailbreakBench JBB-Behaviors, harmful goals", _csv_column("jailbreakbench/behaviors.csv", "Goal")),
    "jbb_benign": ("JailbreakBench JBB-Behaviors, benign twins of the harmful goals",
                   _csv_column("jailbreakbench/benign-behaviors.csv", "goal")),
}


def load_prompt_set(name: str, n: int) -> tuple[list[str], str]:
    """The first n prompts of a set, and where they come from. Falls back to
    the few prompts the package ships when ../shared/data is absent."""
    if name not in PROMPT_SETS:
        raise ValueError(f"prompt set: expected one of {sorted(PROMPT_SETS)}, got '{name}'")
    desc, loader = PROMPT_SETS[name]
    shared = shared_dir()
    if shared is not None:
        try:
            return loader(shared)[:n], desc
        except FileNotFoundError:
            pass
    from . import data as _data

    fallback = _data.HARMFUL if "harm" in name and "less" not in name else _data.HARMLESS
    return fallback[:n], "prompts shipped with scalpel (../shared/data not found)"


def chat_completions(model, prompts: list[str], max_new_tokens: int, batch_size: int = 16,
                     label: str = "generating") -> tuple[list[str], dict]:
    """Greedy chat answers to each prompt (one user turn), batched, with progress."""
    import scalpel

    tok = model.tokenizer
    ids = scalpel.encode_prompts(model, list(prompts), scalpel.chat_formatter(model))
    stops = set(scalpel.default_stop_tokens(tok))
    out: list[str] = []
    ended = 0  # answers that closed their turn (EOS / end-of-turn) within max_new_tokens
    new_tokens = 0
    t0 = time.perf_counter()
    progress = scalpel.Progress(label, len(prompts))
    for i in range(0, len(ids), batch_size):
        res = model.generate(ids[i:i + batch_size], max_new_tokens=max_new_tokens, return_result=True)
        for row in res.new_tokens:
            out.append(tok.decode(row, skip_special_tokens=True).strip())
            new_tokens += len(row)
            ended += bool(row) and row[-1] in stops
        progress.update(len(res.new_tokens))
    progress.finish()
    dt = time.perf_counter() - t0
    return out, {"ended_turn": ended, "seconds": dt, "new_tokens": new_tokens,
                 "new_tokens_per_s": new_tokens / dt if dt > 0 else None, "prompt_tokens": sum(len(x) for x in ids)}


def _plot(rates: dict[str, float], counts: dict[str, int], title: str, path: Path) -> bool:
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend switch
    except ImportError:
        return False
    fig = Figure(figsize=(6, 3.2), dpi=120)
    ax = fig.subplots()
    names = list(rates)
    bars = ax.bar(names, [100 * rates[k] for k in names], color=["#c0392b" if "harm" in k and "less" not in k
                                                                  and "benign" not in k else "#2980b9" for k in names])
    for b, k in zip(bars, names):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1, f"{100 * rates[k]:.0f}% of {counts[k]}",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("refusals (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    from .plots import _save_fig

    _save_fig(fig, path)
    return True


def _write_atomic(path: Path, text: str) -> None:
    from . import _scalpel

    _scalpel.write_file_atomic(str(path), text)


def run(model_name: str = "gemma3-270m", out: str | Path = REPO / "runs", n: int = 16,
        max_new_tokens: int = 48, sets: tuple[str, ...] = ("harmful", "harmless"), dtype: str | None = None,
        show: int = 4) -> Path:
    """The main job. Returns the run directory (report.json, report.md, refusals.png)."""
    import scalpel

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / f"demo-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"scalpel {scalpel.__version__} — main job on {model_name}")
    rss0 = peak_rss_mib()
    t0 = time.perf_counter()
    model = scalpel.load(model_name, dtype=dtype)
    load_s = time.perf_counter() - t0
    cfg = model.config
    n_params = None
    report: dict = {
        "run": stamp,
        "scalpel_version": scalpel.__version__,
        "model": str(model_name),
        "dtype": str(model.dtype).replace("torch.", ""),
        "config": {"architecture": cfg.architecture, "layers": cfg.n_layers, "d_model": cfg.d_model,
                   "heads": cfg.n_heads, "kv_heads": cfg.n_kv_heads, "d_head": cfg.d_head, "d_mlp": cfg.d_mlp,
                   "vocab": cfg.d_vocab},
        "load": {"seconds": load_s, "peak_rss_mib_before": rss0, "peak_rss_mib_after": peak_rss_mib()},
        "judge": {"kind": "substring (JailbreakBench / Arditi et al. list, case-insensitive)",
                  "substrings": list(scalpel.refusal_substrings())},
        "generation": {"greedy": True, "max_new_tokens": max_new_tokens, "chat_template": True},
        "sets": {},
    }
    print(f"  loaded in {load_s:.1f} s ({report['dtype']}), peak RSS {peak_rss_mib():.0f} MiB")
    example = scalpel.chat_formatter(model)("PROMPT")
    report["generation"]["template_example"] = example
    rates, counts = {}, {}
    for name in sets:
        prompts, source = load_prompt_set(name, n)
        answers, timing = chat_completions(model, prompts, max_new_tokens, label=f"{name} prompts")
        judged = [scalpel.is_refusal(a) for a in answers]
        rates[name] = sum(judged) / max(1, len(judged))
        counts[name] = len(judged)
        report["sets"][name] = {
            "source": source, "prompts": len(prompts), "refusals": sum(judged), "refusal_rate": rates[name],
            "timing": timing,
            "samples": [{"prompt": p, "answer": a, "refusal": r} for p, a, r in zip(prompts, answers, judged)],
        }
        print(f"  {name}: {sum(judged)}/{len(judged)} refused ({100 * rates[name]:.1f} %), "
              f"{timing['new_tokens_per_s']:.0f} new tokens/s")
    report["peak_rss_mib"] = peak_rss_mib()
    plotted = _plot(rates, counts, f"{model_name}: refusal rate (greedy chat answers)", run_dir / "refusals.png")

    md = [f"# scalpel main job — {model_name}", "", f"Run {stamp}, scalpel {scalpel.__version__}.", ""]
    md += ["## Model", "", table([[k, v] for k, v in report["config"].items()] + [["dtype", report["dtype"]]],
                                 ["field", "value"]), ""]
    md += [f"Loaded in {load_s:.1f} s; peak RSS {report['load']['peak_rss_mib_after']:.0f} MiB after loading, "
           f"{report['peak_rss_mib']:.0f} MiB at the end.", ""]
    md += ["## Refusals", "", "Greedy answers in the model's chat template (one user turn), judged by the "
           "JailbreakBench / Arditi et al. substring list.", ""]
    md += [table([[k, v["source"], v["prompts"], v["refusals"], f"{100 * v['refusal_rate']:.1f} %",
                   f"{v['timing']['new_tokens_per_s']:.0f}"] for k, v in report["sets"].items()],
                 ["set", "source", "prompts", "refused", "rate", "new tokens/s"]), ""]
    md += ["Answers that closed their turn (`<end_of_turn>` / EOS) within the token budget: " + ", ".join(
        f"{k} {v['timing']['ended_turn']}/{v['prompts']}" for k, v in report["sets"].items()) +
        " — an instruction-tuned model ends most of its turns; a base model rambles on.", ""]
    if plotted:
        md += ["![refusal rates](refusals.png)", ""]
    md += ["Chat format:", "", "```", example, "```", ""]
    for name, v in report["sets"].items():
        md += [f"### {name}: first {min(show, len(v['samples']))} answers", ""]
        md += [table([[s["prompt"][:90], s["answer"].replace("\n", " ")[:160], "yes" if s["refusal"] else "no"]
                      for s in v["samples"][:show]], ["prompt", "answer", "refusal"]), ""]
    _write_atomic(run_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_atomic(run_dir / "report.md", "\n".join(md))
    print("\n".join(md))
    print(f"report: {run_dir / 'report.md'} (and report.json{', refusals.png' if plotted else ''})")
    return run_dir
