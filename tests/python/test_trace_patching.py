"""Activation patching sweeps: the batched, prefix-reusing sweep equals one
forward per patch; clean->clean is a no-op; patching all of resid_pre at layer
0 reproduces the source run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import scalpel


TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request, tmp_path_factory):
    cfg = {"llama": lambda: transformers.LlamaConfig(**TINY),
           "gemma3": lambda: transformers.Gemma3TextConfig(**TINY, head_dim=16, sliding_window=4,
                                                           query_pre_attn_scalar=16)}[request.param]()
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.1)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    return scalpel.load(str(path))


def _pair(seed=0, n=7):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 300, (1, n), generator=g)
    corrupted = clean.clone()
    corrupted[0, 2] = (clean[0, 2] + 1) % 300
    return clean, corrupted


def _metric(logits):  # logit of token 7 minus token 8 at the last position
    return logits[:, -1, 7] - logits[:, -1, 8]


@pytest.mark.parametrize("component,per_position", [
    ("resid_pre", True), ("resid_mid", True), ("attn_out", True), ("mlp_out", True), ("resid_post", False),
    ("z", True), ("result", True), ("v", False), ("mlp_post", False)])
@pytest.mark.oracle
def test_batched_sweep_equals_naive(model, component, per_position):
    clean, corrupted = _pair()
    fast = scalpel.patch_sweep(model, clean, corrupted, _metric, component=component, per_position=per_position,
                               batch_size=5)
    slow = scalpel.patch_sweep_naive(model, clean, corrupted, _metric, component=component, per_position=per_position)
    assert fast.scores.shape == slow.scores.shape
    assert (fast.scores - slow.scores).abs().max().item() < 1e-5
    assert fast.dims[0] == "layer" and (fast.dims[-1] == "pos") == per_position
    assert fast.target_score == pytest.approx(_metric(model(corrupted)).item(), abs=1e-5)
    assert fast.source_score == pytest.approx(_metric(model(clean)).item(), abs=1e-5)


@pytest.mark.parametrize("component", ["resid_pre", "z"])
@pytest.mark.oracle
def test_chosen_positions_are_columns_of_the_full_sweep(model, component):
    clean, corrupted = _pair()
    full = scalpel.patch_sweep(model, clean, corrupted, _metric, component=component)
    for last in (False, True):
        part = scalpel.patch_sweep(model, clean, corrupted, _metric, component=component, positions=[-1, 2, 2],
                                   last_position_only=last, batch_size=3)
        assert list(part.positions) == [2, 6]
        assert torch.allclose(part.scores, full.scores[..., [2, 6]], atol=1e-5)
    naive = scalpel.patch_sweep_naive(model, clean, corrupted, _metric, component=component, positions=[2, 6])
    assert torch.allclose(naive.scores, full.scores[..., [2, 6]], atol=1e-5)
    atp_full = scalpel.attribution_patch(model, clean, corrupted, _metric, component=component)
    atp = scalpel.attribution_patch(model, clean, corrupted, _metric, component=component, positions=[6, 2])
    assert torch.allclose(atp.scores, atp_full.scores[..., [2, 6]], atol=1e-6)
    assert list(full.positions) == list(range(7))
    with pytest.raises(ValueError, match=r"positions in \[-7, 7\)"):
        scalpel.patch_sweep(model, clean, corrupted, _metric, component=component, positions=[7])
    with pytest.raises(ValueError, match="per_position is False"):
        scalpel.patch_sweep(model, clean, corrupted, _metric, component=component, positions=[1], per_position=False)


@pytest.mark.oracle
def test_clean_to_clean_is_a_no_op(model):
    clean, _ = _pair()
    r = scalpel.patch_sweep(model, clean, clean, _metric, component="z")
    assert torch.allclose(r.scores, torch.full_like(r.scores, r.target_score), atol=1e-5)


@pytest.mark.oracle
def test_patching_all_of_resid_pre_at_layer_0_reproduces_the_source(model):
    clean, corrupted = _pair()
    r = scalpel.patch_sweep(model, clean, corrupted, _metric, component="resid_pre", per_position=False, layers=[0])
    assert r.scores.shape == (1,)
    assert r.scores[0].item() == pytest.approx(r.source_score, abs=1e-5)
    # and per position: the corrupted position carries the whole effect at layer 0
    per_pos = scalpel.patch_sweep(model, clean, corrupted, _metric, component="resid_pre", layers=[0]).scores[0]
    assert per_pos[2].item() == pytest.approx(r.source_score, abs=1e-5)
    others = torch.cat([per_pos[:2], per_pos[3:]])
    assert torch.allclose(others, torch.full_like(others, r.target_score), atol=1e-5)


@pytest.mark.oracle
def test_errors(model):
    clean, corrupted = _pair()
    with pytest.raises(ValueError, match="same length"):
        scalpel.patch_sweep(model, clean, corrupted[:, :5], _metric)
    with pytest.raises(KeyError, match="one of"):
        scalpel.patch_sweep(model, clean, corrupted, _metric, component="attention")
    with pytest.raises(ValueError, match="one score per row"):
        scalpel.patch_sweep(model, clean, corrupted, lambda logits: logits[:, -1], component="attn_out")
    with pytest.raises(ValueError, match="layers"):
        scalpel.patch_sweep(model, clean, corrupted, _metric, layers=[99])


@pytest.mark.oracle
def test_last_position_only_gives_the_same_scores(model):
    clean, corrupted = _pair()
    full = scalpel.patch_sweep(model, clean, corrupted, _metric, component="z")
    last = scalpel.patch_sweep(model, clean, corrupted, _metric, component="z", last_position_only=True)
    assert (full.scores - last.scores).abs().max().item() < 1e-5
    for comp, kw in [("z", {}), ("k", {"qk_fix": True})]:
        a = scalpel.attribution_patch(model, clean, corrupted, _metric, component=comp, **kw)
        b = scalpel.attribution_patch(model, clean, corrupted, _metric, component=comp, last_position_only=True, **kw)
        assert (a.scores - b.scores).abs().max().item() < 1e-5
        assert a.source_score == pytest.approx(b.source_score, abs=1e-5)
    logits = model(corrupted)
    one = model(corrupted, last_position_only=True)
    assert one.shape == (1, 1, logits.shape[-1]) and torch.allclose(one[:, 0], logits[:, -1], atol=1e-5)


@pytest.mark.parametrize("component,per_position", [("z", True), ("z", False), ("resid_pre", True), ("mlp_out", False),
                                                    ("mlp_post", False)])
@pytest.mark.oracle
def test_attribution_matches_exact_patching_to_first_order(model, component, per_position):
    clean, corrupted = _pair()
    exact = scalpel.patch_sweep(model, clean, corrupted, _metric, component=component, per_position=per_position)
    atp = scalpel.attribution_patch(model, clean, corrupted, _metric, component=component, per_position=per_position)
    assert atp.scores.shape == exact.scores.shape and atp.dims == exact.dims
    assert atp.target_score == pytest.approx(exact.target_score, abs=1e-4)
    # unpatched positions (before the corrupted token) have no effect in both
    if per_position:
        assert torch.allclose(atp.scores[..., :2], torch.full_like(atp.scores[..., :2], atp.target_score), atol=1e-4)
    # first-order estimate: strongly correlated with the exact effects
    e, a = (exact.scores - exact.target_score).flatten(), (atp.scores - atp.target_score).flatten()
    if e.abs().max() > 1e-3:
        corr = torch.corrcoef(torch.stack([e, a]))[0, 1].item()
        assert corr > 0.5, corr


@pytest.mark.parametrize("component", ["q", "k"])
@pytest.mark.parametrize("per_position", [True, False])
@pytest.mark.oracle
def test_qk_fix_is_the_exact_pattern_change_times_the_pattern_gradient(model, component, per_position):
    # AtP*'s estimate = metric(target) + sum over the patched layer's heads of
    # d metric / d pattern . (pattern with the patch - pattern of the target run),
    # the patched pattern taken from a real patched forward pass.
    clean, corrupted = _pair()
    L, H, KV = model.config.n_layers, model.config.n_heads, model.config.n_kv_heads
    star = scalpel.attribution_patch(model, clean, corrupted, _metric, component=component,
                                     per_position=per_position, qk_fix=True)
    units = H if component == "q" else KV
    assert star.scores.shape == ((L, units, 7) if per_position else (L, units))
    pats = [f"blocks.{l}.attn.hook_pattern" for l in range(L)]
    grads = {}
    with model.hooks(backward=[(n, lambda g, hook: grads.__setitem__(hook.name, g.clone())) for n in pats]):
        score = _metric(model(corrupted))
        score.sum().backward()
    _, base = model.run_with_cache(corrupted, pats)
    _, src = model.run_with_cache(clean, [scalpel.component_hook_name(component, l) for l in range(L)])
    for l in range(L):
        name = scalpel.component_hook_name(component, l)
        for u in range(units):
            for p in (range(7) if per_position else [None]):
                def patch(x, hook):
                    x = x.clone()
                    if p is None:
                        x[:, :, u] = src[name][:, :, u]
                    else:
                        x[:, p, u] = src[name][:, p, u]
                    return x
                with torch.no_grad(), model.hooks([(name, patch)]):
                    _, patched = model.run_with_cache(corrupted, [pats[l]])
                want = (grads[pats[l]] * (patched[pats[l]] - base[pats[l]])).sum().item()
                got = (star.scores[l, u, p] if p is not None else star.scores[l, u]).item() - star.target_score
                assert got == pytest.approx(want, abs=1e-5), (l, u, p)
    with pytest.raises(ValueError, match="qk_fix"):
        scalpel.attribution_patch(model, clean, corrupted, _metric, component="z", qk_fix=True)


@pytest.mark.oracle
def test_attribution_slope_equals_central_finite_difference(model):
    # AtP's estimate is metric(target) + slope, slope = (source - target) . grad; the directional
    # derivative along (source - target) by central differences must equal that slope.
    clean, corrupted = _pair()
    names = [f"blocks.{l}.attn.hook_z" for l in range(model.config.n_layers)]
    _, src = model.run_with_cache(clean, names)
    _, tgt = model.run_with_cache(corrupted, names)
    l, h, p, step = 1, 2, 4, 0.05
    name = names[l]

    def moved(t):
        def hook(x, hook):
            x = x.clone()
            x[0, p, h] = tgt[name][0, p, h] + t * (src[name][0, p, h] - tgt[name][0, p, h])
            return x
        with model.hooks([(name, hook)]):
            return _metric(model(corrupted)).double().item()

    fd = (moved(step) - moved(-step)) / (2 * step)
    atp = scalpel.attribution_patch(model, clean, corrupted, _metric, component="z")
    slope = atp.scores[l, h, p].item() - atp.target_score
    assert fd == pytest.approx(slope, rel=2e-2, abs=2e-4)


# A TinyStories-656K task: who receives the object ("A and B ... A gave X to" -> B), data/pairs/.
REPO = Path(__file__).resolve().parents[2]


def _rank(x):
    return x.argsort().argsort().double()


@pytest.mark.unit
def test_attribution_ranks_heads_like_exact_patching_on_tinystories(shared):
    model = scalpel.load(str(shared / "models" / "tinystories-656k"))
    per_pair, exact_all, atp_all = [], [], []
    for pair in scalpel.load_prompt_pairs(str(REPO / "data" / "pairs" / "tinystories_names.jsonl")):
        t = scalpel.tokenize_prompt_pair(model.tokenizer, pair)
        A, B = t.answer, t.corrupted_answer

        def metric(logits):
            return logits[:, -1, A] - logits[:, -1, B]

        src, tgt = torch.tensor([t.clean]), torch.tensor([t.corrupted])
        exact = scalpel.patch_sweep(model, src, tgt, metric, component="z", per_position=False)
        atp = scalpel.attribution_patch(model, src, tgt, metric, component="z", per_position=False)
        e, a = (exact.scores - exact.target_score).flatten(), (atp.scores - atp.target_score).flatten()
        exact_all.append(e)
        atp_all.append(a)
        per_pair.append(torch.corrcoef(torch.stack([_rank(e), _rank(a)]))[0, 1].item())
    # Heads ranked by their mean effect over the dataset: attribution agrees with exact patching.
    e, a = torch.stack(exact_all).mean(0), torch.stack(atp_all).mean(0)
    overall = torch.corrcoef(torch.stack([_rank(e), _rank(a)]))[0, 1].item()
    print(f"Spearman(exact, attribution) over {e.numel()} heads: dataset mean effect {overall:.3f}; "
          f"per pair {', '.join(f'{x:.3f}' for x in per_pair)}")
    assert overall >= 0.8
    assert sorted(per_pair)[len(per_pair) // 2] >= 0.8


@pytest.mark.oracle
def test_heatmaps_and_json(model, tmp_path):
    import json

    clean, corrupted = _pair()
    for comp, pp in (("z", False), ("resid_pre", True), ("z", True)):
        r = scalpel.patch_sweep(model, clean, corrupted, _metric, component=comp, per_position=pp)
        png = scalpel.plots.save_sweep(r, tmp_path / f"{comp}-{pp}", tokens=[str(t) for t in clean[0].tolist()])
        assert png.exists() and png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        d = json.loads(png.with_suffix(".json").read_text())
        assert d["dims"] == list(r.dims) and torch.allclose(torch.tensor(d["scores"]), r.scores)
        if r.source_score != r.target_score:
            gap = torch.tensor(d["gap_recovered"])
            assert torch.allclose(gap, (r.scores - r.target_score) / (r.source_score - r.target_score), atol=1e-5)


@pytest.mark.unit
def test_qk_fix_finds_the_key_and_query_patches_plain_attribution_misses(shared):
    """On TinyStories-656K's name-copying pairs, AtP*'s QK fix estimates whole-head key and query
    patches closer to exact patching than plain AtP, which linearizes the saturated softmax."""
    model = scalpel.load(str(shared / "models" / "tinystories-656k"))
    pairs = [scalpel.tokenize_prompt_pair(model.tokenizer, p) for p in
             scalpel.load_prompt_pairs(str(REPO / "data" / "pairs" / "tinystories_name_copy.jsonl"))][:8]
    for comp in ("k", "q"):
        err_atp, err_star, exact_all, star_all = [], [], [], []
        for t in pairs:
            metric = lambda logits, a=t.answer, b=t.corrupted_answer: logits[:, -1, a] - logits[:, -1, b]  # noqa: E731
            src, tgt = torch.tensor([t.clean]), torch.tensor([t.corrupted])
            e = scalpel.patch_sweep(model, src, tgt, metric, component=comp, per_position=False)
            a = scalpel.attribution_patch(model, src, tgt, metric, component=comp, per_position=False)
            s = scalpel.attribution_patch(model, src, tgt, metric, component=comp, per_position=False, qk_fix=True)
            gap = e.source_score - e.target_score
            err_atp.append(((a.scores - e.scores) / gap).abs().flatten())
            err_star.append(((s.scores - e.scores) / gap).abs().flatten())
            exact_all.append(((e.scores - e.target_score) / gap).flatten())
            star_all.append(((s.scores - s.target_score) / gap).flatten())
        mae_atp, mae_star = torch.cat(err_atp).mean().item(), torch.cat(err_star).mean().item()
        rho = torch.corrcoef(torch.stack([_rank(torch.cat(exact_all)), _rank(torch.cat(star_all))]))[0, 1].item()
        print(comp, f"mean abs error (fraction of the gap): AtP {mae_atp:.4f}, AtP* {mae_star:.4f}; AtP* Spearman {rho:.3f}")
        assert mae_star < 0.75 * mae_atp
        assert rho >= 0.8
