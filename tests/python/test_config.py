"""config.json / model directories against transformers' own reading."""
from __future__ import annotations

import json

import pytest
import torch

import scalpel


def _config_dirs(shared):
    return sorted(p.parent for p in (shared / "tokenizers").glob("*/config.json")) + [
        shared / "models" / "tinystories-656k"]


@pytest.mark.oracle
def test_real_configs_match_transformers(shared):
    from transformers import AutoConfig

    checked = 0
    for d in _config_dirs(shared):
        ours = scalpel.HFConfig.from_file(str(d))
        ref = AutoConfig.from_pretrained(d)
        text = ref.get_text_config() if hasattr(ref, "get_text_config") else ref
        assert ours.vocab_size == text.vocab_size, d
        assert ours.hidden_size == text.hidden_size, d
        assert ours.num_hidden_layers == text.num_hidden_layers, d
        assert ours.num_attention_heads == text.num_attention_heads, d
        assert ours.num_key_value_heads == getattr(text, "num_key_value_heads", text.num_attention_heads), d
        assert ours.head_dim == (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads), d
        assert ours.tie_word_embeddings == bool(getattr(text, "tie_word_embeddings", False)), d
        rs = getattr(text, "rope_scaling", None) or {}
        if rs.get("rope_type", rs.get("type", "default")) not in ("default", None):
            assert ours.rope_scaling is not None and ours.rope_scaling.rope_type == rs.get("rope_type", rs.get("type"))
        checked += 1
    assert checked >= 8


@pytest.mark.unit
def test_missing_required_key_names_alternatives(tmp_path):
    cfg = {"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "num_hidden_layers": 2, "num_attention_heads": 2}
    with pytest.raises(scalpel.FormatError, match=r'"hidden_size".*also accepted: "n_embd"'):
        scalpel.HFConfig.from_json(json.dumps(cfg))


@pytest.mark.unit
def test_malformed_json_and_types(tmp_path):
    with pytest.raises(scalpel.FormatError, match="well-formed JSON"):
        scalpel.HFConfig.from_json("{not json")
    cfg = {"model_type": "llama", "vocab_size": "many", "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2}
    with pytest.raises(scalpel.FormatError, match='"vocab_size".*an integer'):
        scalpel.HFConfig.from_json(json.dumps(cfg))
    cfg["vocab_size"] = 10
    cfg["num_key_value_heads"] = 3
    with pytest.raises(scalpel.FormatError, match="divisor"):
        scalpel.HFConfig.from_json(json.dumps(cfg))
    with pytest.raises(FileNotFoundError):
        scalpel.HFConfig.from_file(str(tmp_path / "nope"))


@pytest.mark.unit
def test_gpt2_spellings():
    cfg = scalpel.HFConfig.from_json(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                                                 "vocab_size": 100, "n_positions": 128,
                                                 "layer_norm_epsilon": 1e-5,
                                                 "activation_function": "gelu_new"}))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim) == (64, 2, 4, 16)
    assert cfg.max_position_embeddings == 128 and cfg.hidden_act == "gelu_new"


@pytest.mark.unit
def test_llama3_rope_scaling(shared):
    cfg = scalpel.HFConfig.from_file(str(shared / "tokenizers" / "llama-3.2-1b"))
    assert cfg.rope_scaling.rope_type == "llama3"
    assert cfg.rope_scaling.factor == 32.0
    assert cfg.rope_scaling.original_max_position_embeddings == 8192


@pytest.mark.unit
def test_model_dir_tied_embeddings(shared):
    fp32 = scalpel.HFModelDir.open(str(shared / "models" / "tinystories-656k"))
    bf16 = scalpel.HFModelDir.open(str(shared / "models" / "tinystories-656k-bf16"))
    for m in (fp32, bf16):
        assert "lm_head.weight" in m and "model.embed_tokens.weight" in m
        assert torch.equal(m["lm_head.weight"], m["model.embed_tokens.weight"])
    assert fp32.resolve("model.embed_tokens.weight") == "lm_head.weight"
    assert bf16.resolve("lm_head.weight") == "model.embed_tokens.weight"
    assert fp32.generation_config.bos_token_id == 1
    assert fp32.config.torch_dtype == "float32" and bf16.config.torch_dtype == "bfloat16"


@pytest.mark.unit
def test_pickle_only_directory_refused(tmp_path, shared):
    import shutil

    shutil.copy(shared / "models" / "tinystories-656k" / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(scalpel.FormatError, match="never unpickles.*safetensors"):
        scalpel.HFModelDir.open(str(tmp_path))


@pytest.mark.unit
def test_log_level_switch():
    old = scalpel.get_log_level()
    scalpel.set_log_level("debug")
    assert scalpel.get_log_level() == "debug"
    with pytest.raises(ValueError, match="one of trace"):
        scalpel.set_log_level("loud")
    scalpel.set_log_level(old)


@pytest.mark.unit
def test_progress_reaches_callback():
    events = []
    scalpel.set_progress_callback(lambda label, done, total: events.append((label, done, total)))
    try:
        with scalpel.Progress("unit", 3) as p:
            for _ in range(3):
                p.update()
    finally:
        scalpel.set_progress_callback(None)
    assert events[0] == ("unit", 0, 3)
    assert events[-1] == ("unit", 3, 3)
