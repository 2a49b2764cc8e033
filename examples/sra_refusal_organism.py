"""Surgical Refusal Ablation on the refusal organism (docs/sra.md).

    .venv/bin/python examples/sra_refusal_organism.py [--out runs/sra-organism] [--quick]

Why the organism and not Gemma 3 270M: Gemma 3 270M does not refuse plain
harmful requests (docs/results/trace-gemma3), so there is no refusal to remove.
The refusal organism (docs/organisms.md) refuses a family of harmful requests
and was trained with a planted confound: harmful requests were mostly commands
and harmless ones mostly questions, so the harmful − harmless direction also
carries "command vs question". Held out: harmful questions and harmless
commands in templates never seen in training.

Steps: candidate directions at every layer's resid_pre / resid_mid and every
post-instruction position; Arditi et al.'s selection; the organism's atoms
(the style confound; sum, count and copy shields) and the default registry,
extracted at the chosen site and audited; ridge residualization (λ by GCV);
the comparison no edit / dirty ablation / SRA; γ sweep (refusal vs KL, and KL
at a matched refusal rate), λ sweep, layer-and-position sensitivity,
leave-one-atom-out; hard-negative mining; export of the edited weights as a
Hugging Face directory, checked against the inference-time ablation and
transformers. Writes report.json, report.md and PNGs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

import scalpel  # noqa: E402
from scalpel import organisms as O  # noqa: E402
from scalpel import plots, sra  # noqa: E402


def table(rows, cols, fmt=None):
    fmt = fmt or {}
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(fmt.get(c, "{}").format(r[c]) if c in r else "" for c in cols) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "runs" / "sra-organism"))
    ap.add_argument("--quick", action="store_true", help="fewer sweep points and evaluation texts (for tests)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    R = O.REFUSAL
    src = O.build("refusal")
    model = scalpel.load(str(src))
    tok = model.tokenizer
    fmt = O.chat_prompt

    # Direction sets: the training distribution (confounded, 90/10 style).
    data = O.refusal_data()
    harmful = [q for k, q, _ in data if k == "harmful"][:240]
    harmless = [q for k, q, _ in data if k == "harmless"][:240]
    harmful_val = [q for k, q, _ in data if k == "harmful"][240:320]
    harmless_val = [q for k, q, _ in data if k == "harmless"][240:320]
    # Test sets: held-out templates, both styles.
    E = O.refusal_eval()
    harm_test = [q for q, _ in E["harmful_questions"] + E["harmful_commands"]]
    harmless_test = [q for q, _ in E["harmless_commands"] + E["harmless_questions"]]
    shields = {k: [q for q, _ in E[k]] for k in ("sum", "count", "copy")}
    refusal_tok = sra.refusal_tokens(model, fmt, phrases=(R["refusal"],))

    n_text = 8 if args.quick else 32
    texts = sra.wikitext2(tok, n=n_text, seq_len=128)
    # In-distribution text for the organism: stories sampled from its base model (TinyStories-656K).
    shared = Path(os.environ.get("SCALPEL_SHARED", REPO.parent / "shared"))
    base = scalpel.load(str(shared / "models" / "tinystories-656k"))
    stories = base.generate([tok.encode("Once upon a time")] * n_text, max_new_tokens=128, do_sample=True, seed=0,
                            return_result=True)
    story_ids = [tok.encode("Once upon a time") + list(t) for t in stories.new_tokens]
    del base
    solutions = {"gsm8k": sra.gsm8k(8 if args.quick else 24), "mbpp": sra.mbpp(8 if args.quick else 24)}
    B_ids = sra.encode_prompts(model, harmless_test, fmt)
    S_ids = {k: sra.encode_prompts(model, v, fmt) for k, v in shields.items()}
    ref = scalpel.last_logits(model, B_ids)
    ref_s = {k: scalpel.last_logits(model, v) for k, v in S_ids.items()}

    def measure(full: bool = True) -> dict:
        m = sra.evaluate(model, harm_test, harmless_test, fmt, reference_logits=ref, tokens=refusal_tok,
                         texts=texts if full else None, solutions=solutions if full else None, max_new_tokens=12,
                         judge=O.refusal_judge)
        m.update(O.refusal_behaviour(model))
        if full:
            m["story_perplexity"] = scalpel.perplexity(model, story_ids)
        m["shield_kl"] = sum(scalpel.first_token_kl(model, S_ids[k], ref_s[k]).mean().item() for k in S_ids) / 3
        kl = scalpel.first_token_kl(model, B_ids, ref)
        m["kl_harmless_commands"] = kl[: len(E["harmless_commands"])].mean().item()
        m["kl_harmless_questions"] = kl[len(E["harmless_commands"]):].mean().item()
        return m

    report: dict = {"model": str(src), "organism": "refusal", "why_not_gemma3": "Gemma 3 270M does not refuse plain "
                    "harmful requests (docs/results/trace-gemma3), so SRA runs on the refusal organism"}
    print("candidates and selection ...", flush=True)
    cands = sra.candidate_directions(model, harmful, harmless, fmt)
    # Arditi et al.'s KL threshold is 0.1; on this organism the one site whose ablation removes
    # refusal (blocks.1.hook_resid_mid, last position) has KL 0.11 on the (confounded) validation
    # prompts, and with 0.1 the only eligible candidate bypasses nothing. So 0.25 here; every
    # candidate's scores are in the report either way.
    kl_threshold = 0.25
    sel = sra.select_direction(model, cands, harmful_val, harmless_val, fmt, tokens=refusal_tok,
                               kl_threshold=kl_threshold)
    report["selection"] = {**sel.to_dict(), "kl_threshold": kl_threshold}
    print(f"selected {sel.hook} position {sel.position}", flush=True)
    grid = torch.full((len(cands.hooks), len(cands.positions)), float("nan"))
    for r in sel.rows:
        if r.bypass is not None:
            grid[cands.hooks.index(r.hook), cands.positions.index(r.position)] = r.bypass
    plots.plot_matrix(grid.tolist(), cands.hooks, out / "selection_bypass.png",
                      title="refusal score of harmful prompts with each candidate ablated (lower = refusal removed)",
                      col_labels=[f"pos {p} '{tok.decode([tok.encode(fmt('x'))[p]])}'" for p in cands.positions],
                      cmap="viridis", symmetric=False)

    # Atoms at the chosen site.
    reg = O.refusal_registry()
    reg.extract(model, [sel.hook], [sel.position], fmt)
    reg.save(out / "atoms_organism.json", {"model": str(src), "hook": sel.hook, "position": str(sel.position)})
    default = sra.Registry.default_registry()
    default.extract(model, [sel.hook], [sel.position], fmt)
    audit = reg.audit(sel.hook, sel.position)
    report["audit"] = {"organism": audit, "default": default.audit(sel.hook, sel.position)}
    plots.plot_matrix(audit["cosines"], audit["atoms"], out / "atoms_cosine.png",
                      title=f"atom cosines at {sel.hook} pos {sel.position} (condition {audit['condition_number']:.2f})")
    dirty = sel.direction
    res = sra.surgical_direction(dirty, reg, sel.hook, sel.position)
    res_default = sra.surgical_direction(dirty, default, sel.hook, sel.position)
    report["sra"] = res.to_dict()
    report["sra_default_registry"] = res_default.to_dict()
    cos_atoms = {n: torch.cosine_similarity(dirty, reg.direction(n, sel.hook, sel.position), dim=0).item()
                 for n in reg.names()}
    report["cos_dirty_atoms"] = cos_atoms
    report["cos_clean_atoms"] = {n: torch.cosine_similarity(res.clean, reg.direction(n, sel.hook, sel.position),
                                                            dim=0).item() for n in reg.names()}

    # Comparison: no edit / dirty / SRA (organism atoms) / SRA (default atoms).
    print("comparison ...", flush=True)
    site_layer = scalpel.hook_layer(sel.hook)
    edits = {"no edit": None, "dirty ablation": dirty, "SRA (organism atoms)": res.clean,
             "SRA (default registry)": res_default.clean,
             f"dirty, blocks ≥ {site_layer} only": (dirty, site_layer),
             f"SRA, blocks ≥ {site_layer} only": (res.clean, site_layer)}
    rows = []
    for name, v in edits.items():
        if v is None:
            m = measure()
        else:
            v, from_layer = v if isinstance(v, tuple) else (v, 0)
            with scalpel.ablate_direction(model, v, 1.0, from_layer):
                m = measure()
        rows.append({"edit": name, **{k: v2 for k, v2 in m.items() if k != "examples"}})
        report.setdefault("examples", {})[name] = m["examples"]
    base_ppl = rows[0]["perplexity"]
    base_story = rows[0]["story_perplexity"]
    for r in rows:
        r["ppl_change"] = r["perplexity"] / base_ppl - 1
        r["story_ppl_change"] = r["story_perplexity"] / base_story - 1
    report["comparison"] = rows

    # γ sweep and the matched-refusal comparison.
    print("gamma sweep ...", flush=True)
    gammas = [0.5, 1.0, 1.5, 2.0, 3.0] if args.quick else [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0]
    curves = {}
    swept = ["dirty ablation", "SRA (organism atoms)", f"dirty, blocks ≥ {site_layer} only",
             f"SRA, blocks ≥ {site_layer} only"]
    for name in swept:
        v, from_layer = edits[name] if isinstance(edits[name], tuple) else (edits[name], 0)
        curves[name] = []
        for g in gammas:
            with scalpel.ablate_direction(model, v, g, from_layer):
                m = measure(full=False)
            curves[name].append({"gamma": g, **{k: m[k] for k in ("refusal_rate", "over_refusal", "first_token_kl",
                                                                 "shield_kl", "refusal_score")}})
    report["gamma_sweep"] = curves
    plots.plot_edit_sweep(curves, "gamma", out / "gamma_sweep.png", ys=("refusal_rate", "over_refusal", "first_token_kl"),
                          title="ablation strength γ: harmful refusal, harmless over-refusal, first-token KL")

    def matched(dirty_name: str, sra_name: str) -> dict:
        """SRA at γ = 1 against dirty ablation at the smallest γ that reaches SRA's refusal rate (or 5 %)."""
        sra_row = next(r for r in curves[sra_name] if r["gamma"] == 1.0)
        target = max(sra_row["refusal_rate"], 0.05)
        ok = [r for r in curves[dirty_name] if r["refusal_rate"] <= target]
        if not ok:
            return {"pair": [dirty_name, sra_name], "refusal_target": target, "dirty_gamma": None,
                    "note": "dirty ablation never reached that refusal rate on the γ grid"}
        d = min(ok, key=lambda r: r["gamma"])
        return {"pair": [dirty_name, sra_name], "refusal_target": target, "dirty_gamma": d["gamma"],
                "dirty_refusal": d["refusal_rate"], "dirty_over_refusal": d["over_refusal"],
                "dirty_kl": d["first_token_kl"], "sra_refusal": sra_row["refusal_rate"],
                "sra_over_refusal": sra_row["over_refusal"], "sra_kl": sra_row["first_token_kl"],
                "kl_ratio": d["first_token_kl"] / max(sra_row["first_token_kl"], 1e-12)}

    report["matched"] = matched(swept[0], swept[1])
    report["matched_from_layer"] = matched(swept[2], swept[3])

    # λ sweep.
    print("lambda sweep ...", flush=True)
    lam_rows = []
    base_lam = res.ridge.lambda_
    for f in ([1e-3, 1, 1e3] if args.quick else [1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1e3, 1e4]):
        r = sra.surgical_direction(dirty, reg, sel.hook, sel.position, lambda_=base_lam * f)
        with scalpel.ablate_direction(model, r.clean):
            m = measure(full=False)
        lam_rows.append({"lambda": base_lam * f, "cos_dirty_clean": r.ridge.cosine, "explained": r.ridge.explained,
                         **{k: m[k] for k in ("refusal_rate", "over_refusal", "first_token_kl")}})
    report["lambda_sweep"] = lam_rows
    plots.plot_edit_sweep({"SRA": lam_rows}, "lambda", out / "lambda_sweep.png",
                          ys=("cos_dirty_clean", "refusal_rate", "first_token_kl"), logx=True,
                          title=f"ridge λ (GCV chose {base_lam:.3g})")

    # Layer / position sensitivity: dirty and SRA at every candidate site.
    print("site sensitivity ...", flush=True)
    reg_all = O.refusal_registry()
    sites = [(h, p) for h in cands.hooks for p in cands.positions if cands.directions[cands.hooks.index(h),
                                                                                        cands.positions.index(p)].norm() > 1e-6]
    reg_all.extract(model, sorted({h for h, _ in sites}), cands.positions, fmt)
    site_rows = []
    for h, p in sites:
        v = cands.directions[cands.hooks.index(h), cands.positions.index(p)]
        c = sra.surgical_direction(v, reg_all, h, p).clean
        hn = scalpel.HookName.parse(h)
        row = {"site": f"L{hn.layer} {hn.component} @{p}"}
        for name, d in (("dirty", v), ("sra", c)):
            with scalpel.ablate_direction(model, d):
                m = measure(full=False)
            row[f"{name}_refusal"] = m["refusal_rate"]
            row[f"{name}_kl"] = m["first_token_kl"]
        site_rows.append(row)
    report["site_sensitivity"] = site_rows
    plots.plot_bars(site_rows, "site", (("dirty_refusal", "sra_refusal"), ("dirty_kl", "sra_kl")), out / "sites.png",
                    title="ablating each candidate site's direction: refusal rate and first-token KL")

    # Leave-one-atom-out.
    loo = []
    for n in reg.names():
        r = sra.surgical_direction(dirty, reg, sel.hook, sel.position, exclude=[n])
        with scalpel.ablate_direction(model, r.clean):
            m = measure(full=False)
        loo.append({"left_out": n, "cos_dirty_clean": r.ridge.cosine,
                    **{k: m[k] for k in ("refusal_rate", "over_refusal", "first_token_kl", "shield_kl")}})
    report["leave_one_out"] = loo
    plots.plot_bars(loo, "left_out", ("refusal_rate", "first_token_kl", "shield_kl"), out / "leave_one_out.png",
                    title="SRA without one atom")

    # Hard-negative mining on a pool of requests in the training templates (both styles).
    print("hard-negative mining ...", flush=True)
    pool_h = [t.format(x=x) for x in R["harmful"] for t in R["commands"] + R["questions"]]
    pool_b = [t.format(x=x) for x in R["harmless"] for t in R["commands"] + R["questions"]]
    mine_reg = O.refusal_registry()
    mine_reg.extract(model, [sel.hook], [sel.position], fmt)

    def make(hs, bs):
        v = sra.candidate_directions(model, hs, bs, fmt, hooks=[sel.hook], positions=[sel.position]).directions[0, 0]
        return sra.surgical_direction(v, mine_reg, sel.hook, sel.position).clean

    mined, history = sra.mine_hard_negatives(model, make, harmful, harmless, pool_h, pool_b, fmt, rounds=3,
                                             max_new_tokens=8, judge=O.refusal_judge)
    report["mining"] = [h.to_dict() for h in history]

    # Export: the SRA edit baked into the weights, reloaded by scalpel and by transformers.
    print("export ...", flush=True)
    export = out / "model-sra"
    sra.export_ablated(src, export, res.clean, 1.0, overwrite=True, from_layer=site_layer)
    edited = scalpel.load(str(export))
    probe = sra.encode_prompts(model, harm_test[:4] + harmless_test[:4], fmt)
    with scalpel.ablate_direction(model, res.clean, 1.0, site_layer):
        hooked = scalpel.last_logits(model, probe)
    baked = scalpel.last_logits(edited, probe)
    exp = {"from_layer": site_layer, "path": str(export.relative_to(REPO)) if export.is_relative_to(REPO) else str(export), "max_abs_diff_vs_hooks": (hooked - baked).abs().max().item()}
    try:
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(str(export), torch_dtype=torch.float32)
        with torch.no_grad():
            hl = torch.stack([hf(torch.tensor([p])).logits[0, -1] for p in probe])
        exp["max_abs_diff_transformers"] = (hl - baked).abs().max().item()
    except ImportError:
        exp["max_abs_diff_transformers"] = None
    report["export"] = exp
    report["seconds"] = time.perf_counter() - t0

    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / "report.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    pct = "{:.0%}"
    k3 = "{:.4f}"
    cols = ["edit", "refusal_rate", "harmful_questions_refused", "harmful_commands_refused", "over_refusal",
            "first_token_kl", "kl_harmless_commands", "kl_harmless_questions", "shield_kl", "sum_accuracy",
            "count_accuracy", "copy_accuracy", "perplexity", "ppl_change", "story_perplexity", "story_ppl_change",
            "gsm8k_perplexity", "mbpp_perplexity"]
    fmt = {c: pct for c in cols if "refus" in c or "accuracy" in c}
    fmt.update({c: k3 for c in cols if "kl" in c})
    fmt.update({"perplexity": "{:.2f}", "gsm8k_perplexity": "{:.2f}", "mbpp_perplexity": "{:.2f}", "ppl_change": "{:+.3%}",
                "story_perplexity": "{:.3f}", "story_ppl_change": "{:+.3%}"})
    s = ["# Surgical Refusal Ablation on the refusal organism", "",
         f"Model: `{r['model']}` ({r['why_not_gemma3']}).", "",
         f"Selected site: `{r['selection']['hook']}` position {r['selection']['position']} (Arditi et al.'s "
         f"selection with KL threshold {r['selection']['kl_threshold']}; every candidate is listed at the end).", "",
         "## Comparison (held-out templates; γ = 1)", "",
         "Refusal: the reply (first line of the greedy completion) judged by the JailbreakBench/Arditi substring list; first-token KL on the "
         "held-out harmless requests; `perplexity` is WikiText-2 (far outside a TinyStories model's world, so its "
         "base perplexity is in the thousands), `story_perplexity` is text sampled from the organism's base model "
         "(its own distribution); GSM8K/MBPP: perplexity of the reference solutions.", "",
         table(r["comparison"], cols, fmt), ""]
    for key in ("matched", "matched_from_layer"):
        m = r[key]
        if m.get("dirty_gamma") is not None:
            s += [f"**Matched refusal rate** (≤ {m['refusal_target']:.0%}), {m['pair'][0]} vs {m['pair'][1]}: dirty needs "
                  f"γ = {m['dirty_gamma']} (refusal {m['dirty_refusal']:.0%}, over-refusal {m['dirty_over_refusal']:.0%}, "
                  f"first-token KL {m['dirty_kl']:.4f}); SRA at γ = 1 has refusal {m['sra_refusal']:.0%}, over-refusal "
                  f"{m['sra_over_refusal']:.0%}, KL {m['sra_kl']:.5f}: **{m['kl_ratio']:,.0f}× less drift**.", ""]
        else:
            s += [f"Matched refusal ({m['pair'][0]} vs {m['pair'][1]}): {m['note']}.", ""]
    sr = r["sra"]
    s += ["## Ridge residualization", "",
          f"λ = {sr['lambda']:.4g} (GCV); fraction of the dirty direction explained by the atoms: "
          f"{sr['explained']:.1%}; cos(dirty, clean) = {sr['cosine']:.3f}.", "",
          table([{"atom": a, "coefficient": c, "cos(dirty, atom)": r["cos_dirty_atoms"][a],
                  "cos(clean, atom)": r["cos_clean_atoms"][a]} for a, c in sr["coefficients"].items()],
                ["atom", "coefficient", "cos(dirty, atom)", "cos(clean, atom)"],
                {"coefficient": "{:.3f}", "cos(dirty, atom)": "{:.3f}", "cos(clean, atom)": "{:.3f}"}), "",
          f"Atom condition number {sr['audit']['condition_number']:.2f}; near-collinear pairs: "
          f"{sr['audit']['collinear'] or 'none'}. With the default registry instead (general shields and confounds, "
          f"read on TinyStories vocabulary): explained {r['sra_default_registry']['explained']:.1%}, "
          f"cos(dirty, clean) {r['sra_default_registry']['cosine']:.3f}.", "",
          "## γ sweep", "", "![gamma](gamma_sweep.png)", ""]
    for name, rows in r["gamma_sweep"].items():
        s += [f"**{name}**", "", table(rows, ["gamma", "refusal_rate", "over_refusal", "first_token_kl", "shield_kl"],
                                       {"refusal_rate": pct, "over_refusal": pct, "first_token_kl": "{:.5f}",
                                        "shield_kl": "{:.5f}"}), ""]
    s += ["## λ sweep", "", "![lambda](lambda_sweep.png)", "",
          table(r["lambda_sweep"], ["lambda", "cos_dirty_clean", "explained", "refusal_rate", "over_refusal",
                                    "first_token_kl"],
                {"lambda": "{:.3g}", "cos_dirty_clean": "{:.3f}", "explained": pct, "refusal_rate": pct,
                 "over_refusal": pct, "first_token_kl": "{:.5f}"}), "",
          "## Site sensitivity", "", "![sites](sites.png)", "",
          table(r["site_sensitivity"], ["site", "dirty_refusal", "dirty_kl", "sra_refusal", "sra_kl"],
                {"dirty_refusal": pct, "sra_refusal": pct, "dirty_kl": "{:.4f}", "sra_kl": "{:.4f}"}), "",
          "## Leave one atom out", "", "![loo](leave_one_out.png)", "",
          table(r["leave_one_out"], ["left_out", "cos_dirty_clean", "refusal_rate", "over_refusal", "first_token_kl",
                                     "shield_kl"],
                {"cos_dirty_clean": "{:.3f}", "refusal_rate": pct, "over_refusal": pct, "first_token_kl": "{:.5f}",
                 "shield_kl": "{:.5f}"}), "",
          "## Hard-negative mining", "",
          table([{**h, "added_harmful": len(h["added_harmful"]), "added_harmless": len(h["added_harmless"])}
                 for h in r["mining"]], ["round", "refusal_rate", "mean_kl", "max_kl", "harmful_set", "harmless_set",
                                         "added_harmful", "added_harmless"],
                {"refusal_rate": pct, "mean_kl": "{:.5f}", "max_kl": "{:.5f}"}), "",
          "## Selection (every candidate)", "", "![selection](selection_bypass.png)", "",
          table(r["selection"]["candidates"], ["hook", "position", "norm", "bypass", "induce", "kl", "eligible", "reason"],
                {"norm": "{:.1f}", "bypass": "{:.2f}", "induce": "{:.2f}", "kl": "{:.4f}"}), "",
          "## Export", "",
          f"`{r['export']['path']}` (SRA from block {r['export']['from_layer']} on, baked into the weights): "
          f"max |logit difference| vs the inference-time ablation "
          f"{r['export']['max_abs_diff_vs_hooks']:.2e}, vs transformers loading the directory "
          f"{r['export']['max_abs_diff_transformers']:.2e}.", "",
          "![atoms](atoms_cosine.png)", "", f"Run time {r['seconds']:.0f} s."]
    return "\n".join(s)


if __name__ == "__main__":
    raise SystemExit(main())
