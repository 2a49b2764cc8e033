"""An independent oracle for scalpel.patch_sweep.

The reference side shares no scalpel code: it is the Hugging Face transformers
model (same weights, float32, eager attention) with plain PyTorch hooks doing
the activation patching by hand:

  1. run the source (clean) tokens and record the activation;
  2. for each (layer[, head], position), run the target (corrupted) tokens with
     that one activation replaced by the source's, and compute the metric on
     the logits. (The positions of one layer[/head] are the rows of one batch,
     row i patching position i; a spot check redoes one patch as its own
     batch-of-one forward.)

Components and where they live in HF Llama / Gemma 3:
  resid_pre  the input hidden_states of model.layers[l] (forward pre-hook on the
             decoder layer; it may get hidden_states positionally or as a kwarg).
  attn_out   the output of layers[l].self_attn.o_proj: in Llama it is added to
             the residual as is (pre-norm only, no post-attention norm).
  z          the input of o_proj, [batch, pos, n_heads * d_head] viewed as
             [batch, pos, n_heads, d_head]: one head at one position is patched
             by a forward pre-hook on o_proj.

scalpel.patch_sweep(..., per_position=True).scores ([layer, pos] or
[layer, head, pos]) must match the reference within ATOL (absolute, float32).
"""
from __future__ import annotations

import pytest
import torch
import transformers

import scalpel

pytestmark = pytest.mark.oracle

ATOL = 1e-4  # absolute, float32 on both sides
N = 6  # sequence length
TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**TINY),
    "gemma3": lambda: transformers.Gemma3TextConfig(**TINY, head_dim=16, sliding_window=4, query_pre_attn_scalar=16),
}


class Pair:
    """The HF reference model and scalpel's model of the same checkpoint."""

    def __init__(self, hf, ours):
        self.hf, self.ours = hf, ours
        cfg = hf.config
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.references = {}  # component -> (scores, source score, target score), computed once

    def layer(self, l):
        return self.hf.model.layers[l]


def _build(name, tmp_path_factory) -> Pair:
    cfg = CONFIGS[name]()
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.1)
    path = tmp_path_factory.mktemp(f"oracle_{name}")
    hf.save_pretrained(path)
    # The reference reads the same files scalpel reads.
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, attn_implementation="eager").eval()
    return Pair(ref, scalpel.load(str(path), dtype="float32"))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return _build("llama", tmp_path_factory)


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    return _build("gemma3", tmp_path_factory)


def _tokens(seed=0):
    """clean / corrupted [1, N]: they differ at positions 1 and 3."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 300, (1, N), generator=g)
    corrupted = clean.clone()
    corrupted[0, 1] = (clean[0, 1] + 11) % 300
    corrupted[0, 3] = (clean[0, 3] + 97) % 300
    return clean, corrupted


# A fixed direction in logit space, read at the last position: it sums over the whole
# vocabulary, so the patches move it well above ATOL (a two-logit difference of this
# tiny random Llama moves by only a few hundredths).
_DIRECTION = torch.randn(TINY["vocab_size"], generator=torch.Generator().manual_seed(1))


def _metric(logits):  # logits [variants, pos, vocab] -> [variants]
    return logits[:, -1].float() @ _DIRECTION


# ---------------------------------------------------------------------------
# The reference: HF forward passes with hand-written hooks. One clean run
# records the activation at every layer; then, per layer (and head), one forward
# of the corrupted tokens repeated N times in which row i has the activation at
# position i replaced by the clean run's (rows are independent: same tokens, no
# padding, causal attention within each row).

def _hf_logits(pair: Pair, tokens) -> torch.Tensor:
    with torch.no_grad():
        return pair.hf(input_ids=tokens, use_cache=False).logits.float()


def _hf_metric(pair: Pair, tokens) -> float:
    return _metric(_hf_logits(pair, tokens)).item()


def _hidden_from(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args, kwargs, hidden):
    if args:
        return (hidden,) + tuple(args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _patch_rows(x, src, head=None):
    """x [N, pos, ...] (corrupted rows), src [1, pos, ...] (clean): row i gets src at position i
    (only at `head` along dim 2 when given)."""
    x = x.clone()
    for i in range(x.shape[0]):
        if head is None:
            x[i, i] = src[0, i]
        else:
            x[i, i, head] = src[0, i, head]
    return x


class _Component:
    """Where a component lives in the HF model: hook(layer, fn) registers fn(activation) -> replacement
    or None, with activation [batch, pos, d_model] or, for z, [batch, pos, n_heads, d_head]."""

    def __init__(self, pair: Pair, name):
        self.pair, self.name = pair, name

    def hook(self, l, fn):
        layer = self.pair.layer(l)
        if self.name == "resid_pre":  # the decoder layer's input hidden_states
            def pre(mod, args, kwargs):
                new = fn(_hidden_from(args, kwargs))
                return None if new is None else _with_hidden(args, kwargs, new)
            return layer.register_forward_pre_hook(pre, with_kwargs=True)
        if self.name == "attn_out":  # o_proj's output, added to the residual as is (Llama)
            return layer.self_attn.o_proj.register_forward_hook(lambda mod, inputs, output: fn(output))
        if self.name == "z":  # o_proj's input, per head
            H, dh = self.pair.n_heads, self.pair.d_head

            def pre(mod, inputs):
                x = inputs[0]
                new = fn(x.view(*x.shape[:-1], H, dh))
                return None if new is None else (new.reshape(x.shape),) + tuple(inputs[1:])
            return layer.self_attn.o_proj.register_forward_pre_hook(pre)
        raise AssertionError(self.name)


def _reference_sweep(pair: Pair, clean, corrupted, component) -> torch.Tensor:
    """[layer, pos] or [layer, head, pos] of metric(corrupted run with one activation from the clean run)."""
    comp = _Component(pair, component)
    n = clean.shape[1]

    recorded = {}
    handles = [comp.hook(l, lambda act, l=l: recorded.__setitem__(l, act.detach().clone())) for l in range(pair.n_layers)]
    try:
        _hf_logits(pair, clean)
    finally:
        for h in handles:
            h.remove()

    heads = list(range(pair.n_heads)) if component == "z" else [None]
    scores = torch.empty(pair.n_layers, len(heads), n, dtype=torch.float64)
    for l in range(pair.n_layers):
        for u, head in enumerate(heads):
            handle = comp.hook(l, lambda act, l=l, head=head: _patch_rows(act, recorded[l], head))
            try:
                scores[l, u] = _metric(_hf_logits(pair, corrupted.repeat(n, 1))).double()
            finally:
                handle.remove()

    # Spot check of the batching: one patch (last layer, head 0, position 3) as its own forward.
    l, head, pos = pair.n_layers - 1, heads[0], 3

    def patch_one(act):
        act = act.clone()
        if head is None:
            act[:, pos] = recorded[l][:, pos]
        else:
            act[:, pos, head] = recorded[l][:, pos, head]
        return act
    handle = comp.hook(l, patch_one)
    try:
        single = _hf_metric(pair, corrupted)
    finally:
        handle.remove()
    assert single == pytest.approx(scores[l, 0, pos].item(), abs=1e-5)
    return scores if component == "z" else scores[:, 0]

def _check(pair: Pair, component, batch_size):
    clean, corrupted = _tokens()
    if component not in pair.references:
        pair.references[component] = (_reference_sweep(pair, clean, corrupted, component),
                                      _hf_metric(pair, clean), _hf_metric(pair, corrupted))
    ref, ref_source, ref_target = pair.references[component]

    r = scalpel.patch_sweep(pair.ours, clean, corrupted, _metric, component=component, per_position=True,
                            batch_size=batch_size)
    want_dims = ["layer", "head", "pos"] if component == "z" else ["layer", "pos"]
    want_shape = (pair.n_layers, pair.n_heads, N) if component == "z" else (pair.n_layers, N)
    assert list(r.dims) == want_dims
    assert tuple(r.scores.shape) == want_shape == tuple(ref.shape)
    assert list(r.layers) == list(range(pair.n_layers))
    assert list(r.positions) == list(range(N))
    assert r.component == component

    assert r.source_score == pytest.approx(ref_source, abs=ATOL)
    assert r.target_score == pytest.approx(ref_target, abs=ATOL)
    diff = (r.scores.double() - ref).abs().max().item()
    assert diff < ATOL, f"{component}: max |scalpel - HF hooks| = {diff:.3g}\nscalpel {r.scores}\nHF {ref}"

    # The test could fail: the source and target runs differ, and many of the
    # patches move the metric away from the target run's (by 100x ATOL or more).
    assert abs(ref_source - ref_target) > 0.1
    moved = (ref - ref_target).abs() > 1e-2
    assert moved.sum().item() >= ref.numel() // 4, f"{component}: only {moved.sum().item()} patches move the metric"
    assert (r.scores.double() - r.target_score).abs().max().item() > 0.1
    return diff


@pytest.mark.parametrize("batch_size", [5, 64])
@pytest.mark.parametrize("component", ["resid_pre", "attn_out", "z"])
def test_llama_sweep_matches_hf_hooks(llama, component, batch_size):
    _check(llama, component, batch_size)


@pytest.mark.parametrize("component", ["resid_pre", "z"])
def test_gemma3_sweep_matches_hf_hooks(gemma3, component):
    # Gemma 3's decoder layers have post-norms; resid_pre is still the layer's input
    # (after the scaled embedding), and z the input of o_proj.
    _check(gemma3, component, 5)
