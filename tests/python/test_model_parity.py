"""The hooked transformer against Hugging Face transformers (the oracle):
random tiny models made by transformers from configs, real shapes at reduced
depth, and the real TinyStories-656K weights."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

import scalpel


TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)

ARCHS = {
    "llama": lambda: transformers.LlamaConfig(**TINY, rms_norm_eps=1e-5),
    "llama3_rope": lambda: transformers.LlamaConfig(
        **TINY, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        rope_theta=500000.0, tie_word_embeddings=True),
    "mistral": lambda: transformers.MistralConfig(**TINY, sliding_window=None),
    "qwen2": lambda: transformers.Qwen2Config(**TINY, tie_word_embeddings=True),
    "mistral_window": lambda: transformers.MistralConfig(**TINY, sliding_window=8),
    # Qwen3: QK-norm (an RMSNorm per query / key head, before rotary), head_dim not hidden / heads.
    "qwen3": lambda: transformers.Qwen3Config(**TINY, head_dim=24, tie_word_embeddings=True),
    # Phi-3: fused qkv_proj and gate_up_proj, split at load; a sliding window shorter than the prompt.
    "phi3": lambda: transformers.Phi3Config(**TINY, sliding_window=10, pad_token_id=0, bos_token_id=1,
                                            eos_token_id=2),
    "gpt2": lambda: transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=256),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                                   num_attention_heads=4, vocab_size=300,
                                                   max_position_embeddings=256, rotary_pct=0.25),
    "gemma": lambda: transformers.GemmaConfig(**TINY, head_dim=24),
    "gemma2": lambda: transformers.Gemma2Config(**TINY, head_dim=24, sliding_window=8, query_pre_attn_scalar=20,
                                                attn_logit_softcapping=5.0, final_logit_softcapping=3.0),
    # Gemma 3: QK-norm, local layers with their own RoPE base, linear scaling on global layers only.
    "gemma3": lambda: transformers.Gemma3TextConfig(
        **{**TINY, "num_hidden_layers": 3}, head_dim=24, sliding_window=8, query_pre_attn_scalar=20,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 50000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}),
    # The published pattern (five local layers, then a global one) and final soft-capping.
    "gemma3_pattern": lambda: transformers.Gemma3TextConfig(
        **{**TINY, "num_hidden_layers": 6}, head_dim=16, sliding_window=6, final_logit_softcapping=30.0),
}


def _save_random(cfg, path, seed=0):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # larger-than-default weights make mismatches visible
        for p in model.parameters():
            p.normal_(0, 0.08)
    model.save_pretrained(path, safe_serialization=True)
    return model


def _hf_logits(model, tokens, mask=None):
    with torch.no_grad():
        if mask is None:
            return model(tokens).logits.float()
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        return model(tokens, attention_mask=mask, position_ids=pos).logits.float()


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.oracle
def test_random_tiny_model_logits_and_greedy(arch, tmp_path):
    hf = _save_random(ARCHS[arch](), tmp_path)
    ours = scalpel.load(str(tmp_path))
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, TINY["vocab_size"], (2, 24), generator=g)
    ref = _hf_logits(hf, tokens)
    got = ours(tokens)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-4

    # A left-padded batch: each row's real positions give the unpadded logits.
    mask = torch.ones_like(tokens)
    mask[1, :7] = 0
    padded = tokens.clone()
    padded[1, :7] = 0
    got_p = ours(padded, mask)
    ref_p = _hf_logits(hf, padded, mask)
    assert (got_p[mask.bool()] - ref_p[mask.bool()]).abs().max().item() < 1e-4
    alone = ours(tokens[1:, 7:])
    assert (got_p[1, 7:] - alone[0]).abs().max().item() < 1e-4

    # Greedy generation of 20 tokens, token for token.
    prompt = tokens[:1, :8]
    with torch.no_grad():
        ref_gen = hf.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0,
                              attention_mask=torch.ones_like(prompt))
    res = ours.generate(prompt, max_new_tokens=20, stop_tokens=[])
    assert res.new_tokens[0] == ref_gen[0, 8:].tolist()


@pytest.mark.oracle
def test_identity_hooks_are_bit_identical(tmp_path):
    _save_random(ARCHS["llama"](), tmp_path)
    model = scalpel.load(str(tmp_path))
    tokens = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(2))
    plain = model(tokens)
    names = [n for n in model.hook_names() if not n.endswith(("hook_attn_scores", "hook_pattern", "hook_result"))]
    with model.hooks([(n, lambda x, hook: x) for n in names]):
        same = model(tokens)
    with model.hooks([(n, lambda x, hook: None) for n in names]):
        same_none = model(tokens)
    assert torch.equal(plain, same) and torch.equal(plain, same_none)
    # Hooks on scores/pattern/result switch to the explicit path: equal within float error.
    with model.hooks([(n, lambda x, hook: x) for n in model.hook_names()]):
        explicit = model(tokens)
    assert (explicit - plain).abs().max().item() < 1e-5


@pytest.mark.oracle
def test_cache_and_hook_semantics(tmp_path):
    _save_random(ARCHS["qwen2"](), tmp_path)
    model = scalpel.load(str(tmp_path))
    cfg = model.config
    tokens = torch.randint(0, 300, (1, 10), generator=torch.Generator().manual_seed(3))
    logits, cache = model.run_with_cache(tokens)
    assert set(cache) == set(model.hook_names())
    assert cache["blocks.0.attn.hook_q"].shape == (1, 10, cfg.n_heads, cfg.d_head)
    assert cache["blocks.0.attn.hook_k"].shape == (1, 10, cfg.n_kv_heads, cfg.d_head)
    assert cache["blocks.1.attn.hook_pattern"].shape == (1, cfg.n_heads, 10, 10)
    assert cache["blocks.1.attn.hook_result"].shape == (1, 10, cfg.n_heads, cfg.d_model)
    assert torch.allclose(cache["blocks.1.attn.hook_result"].sum(2), cache["blocks.1.hook_attn_out"], atol=1e-5)
    # Patterns are causal and sum to one.
    pat = cache["blocks.0.attn.hook_pattern"]
    assert torch.allclose(pat.sum(-1), torch.ones(()), atol=1e-5) and pat.triu(1).abs().max() == 0
    # Caching every hook (explicit attention path) gives the plain logits within float error.
    plain = model(tokens)
    assert torch.allclose(logits, plain, atol=1e-5)
    logits = plain

    # Replacing an activation changes the output; the hook is gone after the block.
    with model.hooks([("blocks.0.hook_resid_post", lambda x, hook: torch.zeros_like(x))]):
        zeroed = model(tokens)
    assert (zeroed - logits).abs().max() > 1e-3
    assert torch.equal(model(tokens), logits)

    # Removed also when an exception flies.
    def boom(x, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        with model.hooks([("blocks.0.hook_resid_pre", boom)]):
            model(tokens)
    assert torch.equal(model(tokens), logits)

    with pytest.raises(KeyError, match="blocks.0.hook_resid_pre"):
        model.add_hook("blocks.0.hook_resid_pr", lambda x, h: None)
    with pytest.raises(ValueError, match="shape"):
        with model.hooks([("blocks.0.hook_resid_pre", lambda x, h: x[:, :1])]):
            model(tokens)
    with pytest.raises(ValueError, match="token id"):
        model(torch.tensor([[5, 300]]))


@pytest.mark.oracle
def test_tinystories_matches_transformers_and_tells_the_story(shared):
    path = shared / "models" / "tinystories-656k"
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    ours = scalpel.load(str(path))
    bos = ours.tokenizer.bos_token_id
    tokens = torch.tensor([[bos] + ours.tokenizer.encode("Once upon a time, there was a dog", add_special_tokens=False)])
    assert (ours(tokens) - _hf_logits(hf, tokens)).abs().max().item() < 1e-4
    res = ours.generate(torch.tensor([[bos]]), max_new_tokens=16, stop_tokens=[])
    text = ours.tokenizer.decode(res.new_tokens[0], skip_special_tokens=True)
    assert text.startswith("Once upon a time, there was a little girl named Lily."), text


@pytest.mark.oracle
def test_tinystories_bf16(shared):
    path = shared / "models" / "tinystories-656k-bf16"
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16,
                                                           attn_implementation="eager").eval()
    ours = scalpel.load(str(path))
    assert ours.dtype == torch.bfloat16
    tok = ours.tokenizer
    tokens = torch.tensor([[1] + tok.encode("Once upon a time, there was a big dog named Max. He liked to",
                                            add_special_tokens=False)])
    got, ref = ours(tokens), _hf_logits(hf, tokens)
    # bf16 logits agree to within 2 units in the last place of the largest logit
    # (op order differs in places), with the same argmax everywhere.
    ulp = 2.0 ** (int(torch.log2(ref.abs().max()).floor()) - 7)
    assert (got - ref).abs().max().item() <= 2 * ulp
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
    kl = torch.nn.functional.kl_div(got.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="none")
    assert kl.sum(-1).max().item() < 1e-2
    res = ours.generate(torch.tensor([[1]]), max_new_tokens=30, stop_tokens=[])
    with torch.no_grad():
        ref_gen = hf.generate(torch.tensor([[1]]), max_new_tokens=30, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert res.new_tokens[0] == ref_gen[0, 1:].tolist()


@pytest.mark.unit
def test_unknown_architecture_names_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["FancyForCausalLM"], "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2}))
    torch.save  # noqa: B018  (no pickle is written: the weights are safetensors)
    scalpel.save_safetensors(str(tmp_path / "model.safetensors"), {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="LlamaForCausalLM"):
        scalpel.load(str(tmp_path))


@pytest.mark.oracle
def test_backward_hooks_give_true_gradients(tmp_path):
    _save_random(ARCHS["llama"](), tmp_path)
    model = scalpel.load(str(tmp_path))
    tokens = torch.randint(0, 300, (1, 8), generator=torch.Generator().manual_seed(4))
    target = torch.randn(1, 8, 300, generator=torch.Generator().manual_seed(5))
    name = "blocks.0.hook_resid_post"
    grads = {}
    with model.hooks(backward=[(name, lambda g, hook: grads.__setitem__(hook.name, g.clone()))]):
        loss = (model(tokens) * target).sum()
        loss.backward()
    g = grads[name]
    assert g.shape == (1, 8, 64)

    # Central finite differences on three coordinates of the activation.
    def loss_with(delta, pos, dim):
        def bump(x, hook):
            x = x.clone()
            x[0, pos, dim] += delta
            return x
        with torch.no_grad(), model.hooks([(name, bump)]):
            return (model(tokens) * target).sum().item()

    for pos, dim in [(0, 0), (3, 17), (7, 63)]:
        eps = 1e-2
        fd = (loss_with(eps, pos, dim) - loss_with(-eps, pos, dim)) / (2 * eps)
        assert abs(fd - g[0, pos, dim].item()) < 1e-3 * max(1.0, abs(fd)), (pos, dim, fd, g[0, pos, dim].item())
    # Positions after `pos` cannot influence earlier logits: causal gradients.
    assert g[0, -1].abs().sum() > 0


@pytest.mark.oracle
def test_native_hooks_patch_ablate_steer(tmp_path):
    _save_random(ARCHS["llama"](), tmp_path)
    model = scalpel.load(str(tmp_path))
    g = torch.Generator().manual_seed(6)
    clean = torch.randint(0, 300, (1, 10), generator=g)
    corrupt = clean.clone()
    corrupt[0, 2] = (corrupt[0, 2] + 1) % 300
    clean_logits, clean_cache = model.run_with_cache(clean, names=["blocks.0.hook_resid_pre", "blocks.1.attn.hook_z"])
    # Patching every position of resid_pre at layer 0 from the clean run reproduces the clean run.
    with model.hooks([("blocks.0.hook_resid_pre", scalpel.patch_hook(clean_cache["blocks.0.hook_resid_pre"]))]):
        patched = model(corrupt)
    assert torch.allclose(patched, model(clean), atol=1e-6)
    # Clean -> clean patching of one head is a no-op.
    plain = model(clean)
    with model.hooks([("blocks.1.attn.hook_z", scalpel.patch_hook(clean_cache["blocks.1.attn.hook_z"], [3], [1]))]):
        assert torch.equal(model(clean), plain)
    # A native patch equals the same patch written in Python.
    src = clean_cache["blocks.1.attn.hook_z"]

    def py_patch(x, hook):
        x = x.clone()
        x[:, 4, 2] = src[:, 4, 2]
        return x

    with model.hooks([("blocks.1.attn.hook_z", py_patch)]):
        want = model(corrupt)
    with model.hooks([("blocks.1.attn.hook_z", scalpel.patch_hook(src, positions=[4], heads=[2]))]):
        assert torch.equal(model(corrupt), want)
    # Zero ablation of a head changes only positions at or after it.
    with model.hooks([("blocks.1.attn.hook_z", scalpel.ablate_hook(positions=[-1], heads=[0]))]):
        abl = model(clean)
    assert torch.equal(abl[:, :-1], plain[:, :-1]) and not torch.equal(abl[:, -1], plain[:, -1])
    # alpha = 0 steering is a no-op; alpha != 0 moves the logits.
    v = torch.randn(64, generator=g)
    with model.hooks([("blocks.0.hook_resid_post", scalpel.add_vector_hook(v, 0.0))]):
        assert torch.equal(model(clean), plain)
    with model.hooks([("blocks.0.hook_resid_post", scalpel.add_vector_hook(v, 4.0))]):
        assert (model(clean) - plain).abs().max() > 1e-3
    with pytest.raises(ValueError, match="position"):
        with model.hooks([("blocks.0.hook_resid_post", scalpel.ablate_hook(positions=[99]))]):
            model(clean)


@pytest.mark.unit
def test_fp32_checkpoint_loaded_as_bf16_equals_bf16_checkpoint(shared):
    # The bf16 copy of TinyStories is the fp32 weights rounded: converting at load
    # time (which gives the fp32 file's pages back) must give the same model.
    as_bf16 = scalpel.load(str(shared / "models" / "tinystories-656k"), dtype=torch.bfloat16)
    bf16 = scalpel.load(str(shared / "models" / "tinystories-656k-bf16"))
    tokens = torch.tensor([[1] + bf16.tokenizer.encode("Once upon a time", add_special_tokens=False)])
    assert torch.equal(as_bf16(tokens), bf16(tokens))


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
@pytest.mark.oracle
def test_forward_from_equals_forward(arch, tmp_path):
    _save_random(ARCHS[arch](), tmp_path)
    ours = scalpel.load(str(tmp_path))
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, TINY["vocab_size"], (2, 12), generator=g)
    mask = torch.ones_like(tokens)
    mask[1, :4] = 0
    for m in (None, mask):
        full = ours(tokens, m)
        names = [f"blocks.{l}.hook_resid_pre" for l in range(ours.config.n_layers)]
        _, cache = ours.run_with_cache(tokens, names, m)
        for layer in range(ours.config.n_layers):
            got = ours.forward_from(layer, cache[names[layer]], m)
            assert torch.equal(got, full), (layer, (got - full).abs().max())
    with pytest.raises(ValueError, match="layer"):
        ours.forward_from(ours.config.n_layers + 1, cache[names[0]])
    with pytest.raises(ValueError, match="resid_pre"):
        ours.forward_from(0, torch.zeros(1, 3, 5))


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2", "mistral_window"])
@pytest.mark.oracle
def test_forward_from_suffix_equals_the_suffix_of_forward(arch, tmp_path):
    _save_random(ARCHS[arch](), tmp_path)
    ours = scalpel.load(str(tmp_path))
    n = ours.config.n_layers
    tokens = torch.randint(0, TINY["vocab_size"], (1, 14), generator=torch.Generator().manual_seed(4))
    full = ours(tokens)
    rotary = f"blocks.0.attn.hook_rot_k" in ours.hook_names()
    k_hook = "attn.hook_rot_k" if rotary else "attn.hook_k"
    names = [f"blocks.{l}.{h}" for l in range(n) for h in ("hook_resid_pre", k_hook, "attn.hook_v")]
    _, cache = ours.run_with_cache(tokens, names)
    for layer in range(n):
        for start in (0, 5, 13):
            past_k = [cache[f"blocks.{l}.{k_hook}"].transpose(1, 2)[:, :, :start] for l in range(layer, n)]
            past_v = [cache[f"blocks.{l}.attn.hook_v"].transpose(1, 2)[:, :, :start] for l in range(layer, n)]
            x = cache[f"blocks.{layer}.hook_resid_pre"][:, start:].expand(3, -1, -1)
            got = ours.forward_from_suffix(layer, x, past_k, past_v)
            assert (got - full[:, start:]).abs().max().item() < 1e-5, (layer, start)
            last = ours.forward_from_suffix(layer, x, past_k, past_v, last_position_only=True)
            assert last.shape == (3, 1, TINY["vocab_size"])
            assert (last[:, 0] - full[:, -1]).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="one per layer"):
        ours.forward_from_suffix(0, x, past_k[:1], past_v[:1])
