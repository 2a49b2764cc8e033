"""The minimal circuit: sets patched jointly, growth in rank order, pruning."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import scalpel

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def task(shared):
    model = scalpel.load(str(shared / "models" / "tinystories-656k"))
    pairs = [scalpel.tokenize_prompt_pair(model.tokenizer, p)
             for p in scalpel.load_prompt_pairs(str(REPO / "data" / "pairs" / "tinystories_names.jsonl"))]
    return model, pairs


def _run(model, pairs):
    results = []
    for t in pairs:
        A, B = t.answer, t.corrupted_answer
        metric = lambda logits, A=A, B=B: logits[:, -1, A] - logits[:, -1, B]  # noqa: E731
        results.append((torch.tensor([t.clean]), torch.tensor([t.corrupted]), metric))
    return results


@pytest.mark.unit
def test_patch_sets_agree_with_single_patches(task):
    model, pairs = task
    src, tgt, metric = _run(model, pairs[:1])[0]
    sweep = scalpel.patch_sweep(model, src, tgt, metric, component="z", per_position=False)
    sets = [[], [(0, 3)], [(1, 5)], [(0, 3), (1, 5)]]
    got = scalpel.patch_sets(model, [src], [tgt], metric, "z", sets, batch_size=3)
    assert got[0].item() == pytest.approx(sweep.target_score, abs=1e-5)
    assert got[1].item() == pytest.approx(sweep.scores[0, 3].item(), abs=1e-5)
    assert got[2].item() == pytest.approx(sweep.scores[1, 5].item(), abs=1e-5)
    # the joint patch, checked with plain hooks
    _, cache = model.run_with_cache(src, ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"])

    def patch(layer, head):
        def fn(x, hook):
            x = x.clone()
            x[:, :, head] = cache[f"blocks.{layer}.attn.hook_z"][:, :, head]
            return x
        return fn

    with model.hooks([("blocks.0.attn.hook_z", patch(0, 3)), ("blocks.1.attn.hook_z", patch(1, 5))]):
        joint = metric(model(tgt)).item()
    assert got[3].item() == pytest.approx(joint, abs=1e-5)
    whole = scalpel.patch_sets(model, [src], [tgt], metric, "resid_pre", [[(0, -1)]])
    assert whole[0].item() == pytest.approx(sweep.source_score, abs=1e-5)


@pytest.mark.unit
def test_minimal_circuit_on_tinystories(task):
    model, pairs = task
    # the answer ids differ between pairs, so the search runs on one pair with its own metric
    src, tgt, metric = _run(model, pairs[:1])[0]
    r = scalpel.minimal_circuit(model, [src], [tgt], metric, component="z", min_recovered=0.8)
    assert len(r.ranking) == 16 and r.curve.shape == (17,)
    assert r.curve[0].item() == pytest.approx(r.target_mean, abs=1e-5)
    print(r, r.circuit, f"curve {[round(x, 3) for x in r.curve.tolist()]}")
    if r.reached:
        assert r.recovered >= 0.8
        # minimal: removing any member breaks the criterion
        without = [[c for c in r.circuit if c != d] for d in r.circuit]
        if without and len(r.circuit) > 1:
            m = scalpel.patch_sets(model, [src], [tgt], metric, "z", without)
            gap = r.source_mean - r.target_mean
            assert all((x - r.target_mean) / gap < 0.8 for x in m.tolist())
        again = scalpel.patch_sets(model, [src], [tgt], metric, "z", [list(r.circuit)])
        assert again[0].item() == pytest.approx(r.circuit_metric, abs=1e-5)
    with pytest.raises(ValueError, match="as many targets"):
        scalpel.minimal_circuit(model, [src], [], metric)


def _head_hook(layer, head, value):
    """Replaces head `head` of blocks.{layer}.attn.hook_z with `value` ([pos or 1, d_head])."""
    def fn(x, hook):
        x = x.clone()
        x[:, :, head] = value
        return x
    return (f"blocks.{layer}.attn.hook_z", fn)


@pytest.mark.unit
def test_ablate_sets_zero_mean_resample(task):
    model, pairs = task
    src, tgt, metric = _run(model, pairs[:1])[0]
    name = "blocks.1.attn.hook_z"
    sets = [[], [(1, 2)]]
    # zero
    got = scalpel.ablate_sets(model, [tgt], metric, "z", sets, kind="zero")
    with model.hooks([_head_hook(1, 2, 0.0)]):
        want = metric(model(tgt)).item()
    assert got[0].item() == pytest.approx(metric(model(tgt)).item(), abs=1e-5)
    assert got[1].item() == pytest.approx(want, abs=1e-5)
    assert abs(got[1].item() - got[0].item()) > 1e-3  # the ablation does something
    # mean over all positions of the reference prompts (of different lengths)
    refs = [torch.tensor([model.tokenizer.encode(t)]) for t in
            ["Once upon a time, there was a cat.", "The dog ran to the park and played with a ball all day."]]
    acts = [model.run_with_cache(r, [name])[1][name][0, :, 2] for r in refs]
    mean = torch.cat(acts).mean(0)
    got = scalpel.ablate_sets(model, [tgt], metric, "z", sets, kind="mean", reference=refs)
    with model.hooks([_head_hook(1, 2, mean)]):
        assert got[1].item() == pytest.approx(metric(model(tgt)).item(), abs=1e-4)
    # per-position mean over prompts of the target's length
    got = scalpel.ablate_sets(model, [tgt], metric, "z", sets, kind="mean", reference=[src, tgt], per_position=True)
    pp = (model.run_with_cache(src, [name])[1][name][0, :, 2] + model.run_with_cache(tgt, [name])[1][name][0, :, 2]) / 2
    with model.hooks([_head_hook(1, 2, pp)]):
        assert got[1].item() == pytest.approx(metric(model(tgt)).item(), abs=1e-4)
    with pytest.raises(ValueError, match="per_position=False"):
        scalpel.ablate_sets(model, [tgt], metric, "z", sets, kind="mean", reference=refs, per_position=True)
    # resample among the prompts themselves: with two prompts each draws the other,
    # which is patching the other's activations in
    got = scalpel.ablate_sets(model, [src, tgt], metric, "z", sets, kind="resample", samples=3)
    want = scalpel.patch_sets(model, [tgt, src], [src, tgt], metric, "z", sets)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="kind=\"mean\""):
        scalpel.ablate_sets(model, [tgt], metric, "z", sets, kind="resample", reference=[torch.cat([tgt, tgt], 1)])
    with pytest.raises(ValueError, match="zero"):
        scalpel.ablate_sets(model, [tgt], metric, "z", sets, kind="median")
    with pytest.raises(ValueError, match=r"unit in \[0, 8\)"):
        scalpel.ablate_sets(model, [tgt], metric, "z", [[(1, 8)]])
    with pytest.raises(ValueError, match="unit -1"):
        scalpel.ablate_sets(model, [tgt], metric, "mlp_out", [[(1, 0)]])


@pytest.mark.unit
def test_one_metric_per_pair(task):
    model, pairs = task
    runs = _run(model, pairs)
    srcs, tgts, metrics = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
    sets = [[], [(0, 1), (1, 4)]]
    got = scalpel.patch_sets(model, srcs, tgts, metrics, "z", sets)
    each = [scalpel.patch_sets(model, [s], [t], m, "z", sets) for s, t, m in runs]
    assert torch.allclose(got, torch.stack(each).mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="one per pair"):
        scalpel.patch_sets(model, srcs, tgts, metrics[:2], "z", sets)
    with pytest.raises(TypeError, match="callable"):
        scalpel.patch_sets(model, srcs, tgts, 3, "z", sets)
    r = scalpel.minimal_circuit(model, srcs, tgts, metrics, component="z", min_recovered=0.7)
    print(r, r.circuit)
    assert r.curve[0].item() == pytest.approx(r.target_mean, abs=1e-5)
    assert r.curve[-1].item() == pytest.approx(r.source_mean, abs=1e-3)  # every head patched: z carries everything attention does
    assert r.reached and r.recovered >= 0.7


@pytest.mark.oracle
def test_validate_circuit(task, shared):
    model, pairs = task
    runs = _run(model, pairs)
    found, held = runs[:3], runs[3:]
    r = scalpel.minimal_circuit(model, [x[0] for x in found], [x[1] for x in found], [x[2] for x in found],
                                component="z", min_recovered=0.7)
    circuit = list(r.circuit)
    srcs, tgts, metrics = [x[0] for x in held], [x[1] for x in held], [x[2] for x in held]
    texts = [torch.tensor([model.tokenizer.encode(t)]) for t in
             ["One day, a little boy named Tom went to the park with his mom.",
              "The sun was shining and the birds were singing in the tall green trees."]]
    v = scalpel.validate_circuit(model, circuit, srcs, tgts, metrics, texts, random_sets=3, seed=1)
    print(v, circuit)
    assert v.pairs == 3
    all_heads = [(l, h) for l in range(2) for h in range(8)]
    rest = [c for c in all_heads if c not in circuit]
    want = scalpel.patch_sets(model, srcs, tgts, metrics, "z", [[], circuit, rest])
    gap = v.source_mean - v.target_mean
    assert v.target_mean == pytest.approx(want[0].item(), abs=1e-5)
    assert v.patched_mean == pytest.approx(want[1].item(), abs=1e-5)
    assert v.recovered == pytest.approx((want[1].item() - v.target_mean) / gap, abs=1e-4)
    assert v.complement_recovered == pytest.approx((want[2].item() - v.target_mean) / gap, abs=1e-4)
    assert v.source_mean == pytest.approx(sum(m(model(s)).item() for s, m in zip(srcs, metrics)) / 3, abs=1e-5)
    # the mean edit: every circuit head replaced by its mean over the source runs (all pairs, positions)
    layers = sorted({l for l, _ in circuit})
    caches = [model.run_with_cache(s, [f"blocks.{l}.attn.hook_z" for l in layers])[1] for s in srcs]
    means = {l: torch.cat([c[f"blocks.{l}.attn.hook_z"][0] for c in caches]).mean(0) for l in layers}
    hooks = [_head_hook(l, h, means[l][h]) for l, h in circuit]
    with model.hooks(hooks):
        edited = [m(model(t)).item() for t, m in zip(tgts, metrics)]
        edited_logits = [model(t) for t in texts]
    assert v.mean_patched_mean == pytest.approx(sum(edited) / 3, abs=1e-4)
    # unrelated text: perplexity against transformers' logits, KL and edited perplexity against plain hooks
    import transformers
    hf = transformers.AutoModelForCausalLM.from_pretrained(shared / "models" / "tinystories-656k", dtype=torch.float32)
    nll, kl, nll_edit, n = 0.0, 0.0, 0.0, 0
    for t, e in zip(texts, edited_logits):
        with torch.no_grad():
            base = torch.log_softmax(hf(t).logits[0, :-1].float(), -1)
        lp = torch.log_softmax(e[0, :-1].float(), -1)
        nll -= base.gather(-1, t[0, 1:, None]).sum().item()
        nll_edit -= lp.gather(-1, t[0, 1:, None]).sum().item()
        kl += (base.exp() * (base - lp)).sum().item()
        n += t.shape[1] - 1
    assert v.text_tokens == n
    assert v.perplexity == pytest.approx(torch.tensor(nll / n).exp().item(), rel=1e-4)
    assert v.edited_perplexity == pytest.approx(torch.tensor(nll_edit / n).exp().item(), rel=1e-4)
    assert v.kl == pytest.approx(kl / n, rel=1e-3, abs=1e-6)
    assert v.kl > 0 and v.random_kl > 0
    d = v.to_dict()
    assert d["recovered"] == v.recovered and set(d) >= {"kl", "random_kl", "perplexity", "edited_perplexity"}
    with pytest.raises(ValueError, match="at least one component"):
        scalpel.validate_circuit(model, [], srcs, tgts, metrics)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        scalpel.validate_circuit(model, circuit, srcs, tgts, metrics, [texts[0][:, :1]])


@pytest.mark.unit
def test_name_copy_circuit_holds_on_held_out_pairs(shared):
    """The TinyStories demonstration (examples/trace_tinystories.py) in brief: the circuit found on
    half of the name-copying pairs recovers the gap on the other half, random sets of its size do
    not, and its mean edit disturbs unrelated text less than theirs."""
    model = scalpel.load(str(shared / "models" / "tinystories-656k"))
    runs = _run(model, [scalpel.tokenize_prompt_pair(model.tokenizer, p) for p in
                        scalpel.load_prompt_pairs(str(REPO / "data" / "pairs" / "tinystories_name_copy.jsonl"))])
    find, held = runs[0::2], runs[1::2]
    r = scalpel.minimal_circuit(model, [x[0] for x in find], [x[1] for x in find], [x[2] for x in find],
                                component="z", min_recovered=0.8)
    assert r.reached and 1 <= len(r.circuit) <= 4
    text = [torch.tensor([model.tokenizer.encode("The cat liked to sleep on the soft bed. When it woke up, it "
                                                 "wanted to eat. Then it went out to play in the sun.")])]
    v = scalpel.validate_circuit(model, list(r.circuit), [x[0] for x in held], [x[1] for x in held],
                                 [x[2] for x in held], text, random_sets=10)
    print(r.circuit, v)
    assert v.source_mean > 5 and v.target_mean < -5  # the model copies the name
    assert v.recovered >= 0.8 and v.random_recovered < 0.5
    assert v.kl < v.random_kl


@pytest.mark.unit
def test_last_position_only_gives_the_same_numbers(task):
    model, pairs = task
    runs = _run(model, pairs[:3])
    srcs, tgts, metrics = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
    sets = [[], [(1, 2)], [(0, 1), (1, 4)]]
    for last in (False, True):
        got = scalpel.patch_sets(model, srcs, tgts, metrics, "z", sets, last_position_only=last)
        abl = scalpel.ablate_sets(model, tgts, metrics, "z", sets, kind="mean", reference=srcs, last_position_only=last)
        circ = scalpel.minimal_circuit(model, srcs, tgts, metrics, min_recovered=0.5, last_position_only=last)
        val = scalpel.validate_circuit(model, [(1, 2)], srcs, tgts, metrics, last_position_only=last)
        if last:
            assert torch.allclose(got, ref[0], atol=1e-5) and torch.allclose(abl, ref[1], atol=1e-5)
            assert circ.circuit == ref[2].circuit and torch.allclose(circ.curve, ref[2].curve, atol=1e-5)
            assert val.recovered == pytest.approx(ref[3].recovered, rel=1e-4, abs=1e-5)  # a small gap amplifies rounding
            assert val.mean_patched_mean == pytest.approx(ref[3].mean_patched_mean, abs=1e-5)
        ref = (got, abl, circ, val)
