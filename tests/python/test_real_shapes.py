"""Random-weight models with the real shapes of popular checkpoints (config.json
from ../shared/tokenizers, reduced to one layer): logits match transformers."""
from __future__ import annotations

import gc
import json

import pytest
import torch
import transformers

import scalpel

pytestmark = pytest.mark.oracle


def _real_configs(shared):
    out = []
    for path in sorted((shared / "tokenizers").glob("*/config.json")):
        arch = json.loads(path.read_text()).get("architectures", [""])[0]
        if arch in scalpel.supported_architectures():
            out.append(path.parent)
    return out


def test_longrope_is_refused(shared, tmp_path):
    """Phi-3-mini-128k's LongRoPE scaling is not implemented: loading says so, naming the rope type."""
    real = json.loads((shared / "tokenizers" / "phi-3-mini-128k-instruct" / "config.json").read_text())
    assert real["rope_scaling"]["type"] == "longrope"
    cfg = transformers.Phi3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                                  num_key_value_heads=4, vocab_size=300, pad_token_id=0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path, safe_serialization=True)
    saved = json.loads((tmp_path / "config.json").read_text())
    half = 64 // 4 // 2
    saved.pop("rope_parameters", None)
    saved["rope_scaling"] = {"type": "longrope", "short_factor": [1.0] * half, "long_factor": [2.0] * half}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="longrope"):
        scalpel.load(str(tmp_path))


# Qwen3-0.6B's published shape (../shared has its tokenizer but not its config.json).
QWEN3_0_6B = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=1024, intermediate_size=3072,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  vocab_size=151936, max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, attention_bias=False, use_sliding_window=False)


def test_qwen3_real_shape_at_depth_one(tmp_path):
    cfg = transformers.Qwen3Config(**{**QWEN3_0_6B, "num_hidden_layers": 1})
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    ours = scalpel.load(str(tmp_path), dtype="float32")
    tokens = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(tokens).logits.float()
    got = ours(tokens)
    scale = ref.abs().max().item()
    assert (got - ref).abs().max().item() < 1e-4 * max(1.0, scale), ((got - ref).abs().max().item(), scale)
    assert "blocks.0.attn.q_ln.hook_normalized" in ours.hook_names()


def test_real_shapes_at_depth_one(shared, tmp_path):
    dirs = _real_configs(shared)
    assert len(dirs) >= 5, dirs
    for d in dirs:
        cfg = transformers.AutoConfig.from_pretrained(d)
        cfg.num_hidden_layers = 1
        rope = getattr(cfg, "rope_parameters", None) or {}
        if rope.get("rope_type", rope.get("type")) == "longrope":  # Phi-3-128k: refused (test_longrope_is_refused)
            cfg.rope_parameters = {"rope_type": "default", "rope_theta": rope.get("rope_theta", 10000.0),
                                   "partial_rotary_factor": rope.get("partial_rotary_factor", 1.0)}
        if hasattr(cfg, "layer_types") and cfg.layer_types:
            cfg.layer_types = cfg.layer_types[:1]
        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32).eval()
        out = tmp_path / d.name
        hf.save_pretrained(out, safe_serialization=True)
        ours = scalpel.load(str(out), dtype="float32")
        tokens = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = hf(tokens).logits.float()
        got = ours(tokens)
        scale = ref.abs().max().item()
        assert (got - ref).abs().max().item() < 1e-4 * max(1.0, scale), (d.name, (got - ref).abs().max().item(), scale)
        del hf, ours
        gc.collect()
        import shutil

        shutil.rmtree(out)
