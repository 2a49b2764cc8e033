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


def test_real_shapes_at_depth_one(shared, tmp_path):
    dirs = _real_configs(shared)
    assert len(dirs) >= 5, dirs
    for d in dirs:
        cfg = transformers.AutoConfig.from_pretrained(d)
        cfg.num_hidden_layers = 1
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
