"""Hook handles may outlive their model: removing them afterwards is a no-op,
never a touch of freed memory (the handle holds only a weak reference)."""
from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

# Run in a child process: a use-after-free would crash it, not the test run.
SCRIPT = textwrap.dedent("""
    import gc, json, torch, scalpel
    cfg = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                      "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 64,
                      "rms_norm_eps": 1e-6})
    def fresh():
        return scalpel.Transformer.from_config(cfg, seed=0)
    # a Python hook, a native hook, and the direction handles
    model = fresh()
    h1 = model.add_hooks([("blocks.0.hook_resid_pre", lambda x, hook: x * 2)])
    h2 = model.add_hooks([("blocks.1.attn.hook_z", scalpel.ablate_hook(heads=[1]))])
    h3 = scalpel.ablate_direction(model, torch.ones(32))
    h4 = scalpel.add_direction(model, torch.ones(32), 1.0, 1)
    assert all(h.active for h in (h1, h2, h3, h4))
    del model
    gc.collect()
    for h in (h1, h2, h3, h4):
        assert not h.active
        h.remove()
        h.remove()
    # a `with` block whose model goes first
    model = fresh()
    with model.hooks([("blocks.0.hook_resid_post", lambda x, hook: None)]) as h:
        del model
        gc.collect()
    # handles still remove their hooks while the model lives
    model = fresh()
    tokens = torch.tensor([[1, 2, 3]])
    clean = model(tokens)
    h = model.add_hooks([("blocks.0.hook_resid_pre", lambda x, hook: x * 0)])
    assert not torch.equal(model(tokens), clean)
    h.remove()
    assert torch.equal(model(tokens), clean)
    print("ok")
""")


def test_handles_outlive_their_model():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"child exited with {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip().endswith("ok")


GRAPH_SCRIPT = textwrap.dedent("""
    import gc, json, torch, scalpel
    cfg = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                      "num_key_value_heads": 2, "vocab_size": 50, "max_position_embeddings": 64,
                      "rms_norm_eps": 1e-6})
    model = scalpel.Transformer.from_config(cfg, seed=0)
    for _, p in model.named_parameters():
        p.requires_grad_(True)
    seen, kept = [], []
    h = model.add_backward_hooks([("blocks.0.hook_resid_post", lambda g, hook: seen.append(hook.name))])
    h2 = model.add_hooks([("blocks.1.hook_resid_pre", lambda x, hook: kept.append(hook) or None)])
    logits = model(torch.tensor([[1, 2, 3]]))
    # the graph and a hook object outlive the model: backward must neither crash nor call removed hooks
    del model
    gc.collect()
    logits.sum().backward()
    assert seen == [], seen            # the hook's model is gone: it does not fire
    assert kept[0].name == "blocks.1.hook_resid_pre"   # a copy, valid after the model
    # while the model lives, a removed gradient hook does not fire on an earlier graph either
    model = scalpel.Transformer.from_config(cfg, seed=0)
    for _, p in model.named_parameters():
        p.requires_grad_(True)
    seen = []
    h = model.add_backward_hooks([("blocks.0.hook_resid_post", lambda g, hook: seen.append(hook.name))])
    out = model(torch.tensor([[1, 2, 3]]))
    h.remove()
    out.sum().backward()
    assert seen == []
    h = model.add_backward_hooks([("blocks.0.hook_resid_post", lambda g, hook: seen.append(hook.name))])
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    assert seen == ["blocks.0.hook_resid_post"], seen
    print("ok")
""")


def test_gradient_hooks_and_hook_objects_outlive_their_model():
    r = subprocess.run([sys.executable, "-c", GRAPH_SCRIPT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"child exited with {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip().endswith("ok")
