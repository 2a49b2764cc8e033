"""Steering vectors: the contrast vectors equal to the same statistics computed from transformers'
own activations, the edit equal to plain PyTorch hooks on the transformers model, the control
vector read back by the `gguf` package, optimization on the breaker objective, the file format,
and the errors users will meet. (steering-vectors and repeng side by side: bench/bench_steering_peers.py.)"""
from __future__ import annotations

import json

import pytest
import torch

import scalpel
from parity_util import TINY_LLAMA, random_hf_model

LLAMA = TINY_LLAMA
GEMMA3 = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 32,
          "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 1,
          "head_dim": 8, "vocab_size": 97, "max_position_embeddings": 64, "sliding_window": 4,
          "query_pre_attn_scalar": 8, "tie_word_embeddings": True}


def _hf_pair(tmp_path, config: dict):
    import transformers
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    cfg.architectures = config["architectures"]
    hf = random_hf_model(cfg, tmp_path / "hf")
    return hf, scalpel.load(str(tmp_path / "hf"), dtype="float32")


def _prompts(n: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 97, (5 + i % 3,), generator=g).tolist() for i in range(n)]


def _hf_last_hidden(hf, prompts, layer: int) -> torch.Tensor:
    """transformers' own activations: the output of model.layers[layer] at each prompt's last token."""
    rows = []
    with torch.no_grad():
        for p in prompts:
            out = hf(torch.tensor([p]), output_hidden_states=True)
            rows.append(out.hidden_states[layer + 1][0, -1].double())
    return torch.stack(rows)


@pytest.mark.oracle
@pytest.mark.parametrize("config", [LLAMA, GEMMA3], ids=["llama", "gemma3"])
def test_contrast_vectors_equal_the_statistics_of_transformers_activations(tmp_path, config):
    hf, m = _hf_pair(tmp_path, config)
    pos, neg = _prompts(8, 1), _prompts(8, 2)
    P, N = _hf_last_hidden(hf, pos, 1), _hf_last_hidden(hf, neg, 1)
    sv = scalpel.SteeringVector.from_contrast(m, ["blocks.1.hook_resid_post"], pos, neg)
    want = P.mean(0) - N.mean(0)
    got = sv.vectors[0].double()
    assert torch.nn.functional.cosine_similarity(got, want, dim=0) >= 0.9999
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    # pca_diff: the first principal component of the centred paired differences (numpy's SVD)
    import numpy as np
    d = (P - N).numpy()
    _, _, vt = np.linalg.svd(d - d.mean(0), full_matrices=False)
    pc = torch.from_numpy(vt[0])
    pc = pc if float(pc @ want) > 0 else -pc
    sv2 = scalpel.SteeringVector.from_contrast(m, ["blocks.1.hook_resid_post"], pos, neg, method="pca_diff")
    got2 = sv2.vectors[0].double()
    assert torch.nn.functional.cosine_similarity(got2, pc, dim=0) >= 0.9999
    assert abs(float(got2.norm()) - float(want @ pc)) <= 1e-4 * float(want.norm())


@pytest.mark.oracle
@pytest.mark.parametrize("config", [LLAMA, GEMMA3], ids=["llama", "gemma3"])
def test_the_edit_equals_plain_pytorch_hooks_on_transformers(tmp_path, config):
    hf, m = _hf_pair(tmp_path, config)
    d_head = 8
    sv = scalpel.SteeringVector.create(m, ["blocks.1.hook_resid_post", ("blocks.2.attn.hook_z", 3), "blocks.0.hook_resid_pre"])
    g = torch.Generator().manual_seed(3)
    sv.vectors = [torch.randn(v.shape, generator=g) for v in sv.vectors]
    t = torch.randint(1, 97, (2, 9), generator=g)
    with sv.attach(m, alpha=0.7):
        ours = m(t)
    v0, v1, v2 = (v.clone() for v in sv.vectors)
    handles = [
        hf.model.layers[1].register_forward_hook(
            lambda mod, args, out: (out[0] + 0.7 * v0,) + tuple(out[1:]) if isinstance(out, tuple) else out + 0.7 * v0),
        hf.model.layers[0].register_forward_pre_hook(lambda mod, args: (args[0] + 0.7 * v2,) + tuple(args[1:])),
    ]

    def z(mod, args):
        x = args[0].clone()
        x[..., 3 * d_head:4 * d_head] += 0.7 * v1
        return (x,)
    handles.append(hf.model.layers[2].self_attn.o_proj.register_forward_pre_hook(z))
    with torch.no_grad():
        want = hf(t).logits
    for h in handles:
        h.remove()
    assert (ours - want).abs().max() < 1e-4
    with torch.no_grad():
        assert (m(t) - hf(t).logits).abs().max() < 1e-4  # detached: the plain model


@pytest.mark.oracle
def test_the_control_vector_reads_back_with_the_gguf_package(tmp_path):
    import gguf
    m = scalpel.Transformer.from_config(json.dumps(LLAMA), seed=0, init_std=0.2)
    sv = scalpel.SteeringVector.create(m, ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"])
    g = torch.Generator().manual_seed(5)
    sv.vectors = [torch.randn(32, generator=g) for _ in range(2)]
    sv.max_norm = 2.5
    scalpel.export_control_vector(m, sv, str(tmp_path / "cv.gguf"), alpha=1.5)
    r = gguf.GGUFReader(str(tmp_path / "cv.gguf"))
    fields = {f.name: f for f in r.fields.values()}
    text = lambda f: bytes(f.parts[f.data[0]]).decode()  # noqa: E731
    assert text(fields["general.architecture"]) == "controlvector"
    assert text(fields["controlvector.model_hint"]) == "llama"
    assert int(fields["controlvector.layer_count"].parts[-1][0]) == 2
    got = {t.name: torch.from_numpy(t.data.copy()) for t in r.tensors}
    assert sorted(got) == ["direction.1", "direction.2"]
    for name, v in zip(["direction.1", "direction.2"], sv.effective_vectors()):
        assert torch.equal(got[name], (v * 1.5).float())
        assert float(v.norm()) <= 2.5 + 1e-5


@pytest.mark.unit
def test_file_round_trip_and_errors(tmp_path):
    m = scalpel.Transformer.from_config(json.dumps(LLAMA), seed=0, init_std=0.2)
    sv = scalpel.SteeringVector.create(m, [("blocks.0.attn.hook_z", 1), "blocks.2.mlp.hook_post"])
    sv.vectors = [torch.randn(v.shape) for v in sv.vectors]
    sv.alpha, sv.positions = 2.0, "generated"
    scalpel.save_intervention(sv, str(tmp_path / "sv.safetensors"))
    back = scalpel.load_intervention(str(tmp_path / "sv.safetensors"))
    assert isinstance(back, scalpel.SteeringVector) and back.kind == "steering_vector"
    assert back.alpha == 2.0 and back.positions == "generated"
    assert all(torch.equal(a, b) for a, b in zip(back.vectors, sv.vectors))
    other = scalpel.Transformer.from_config(json.dumps(LLAMA), seed=1, init_std=0.2)
    with pytest.raises(ValueError, match="the model it was made for"):
        back.attach(other)
    with pytest.raises(ValueError, match="positions"):
        scalpel.export_control_vector(m, sv, str(tmp_path / "x.gguf"))
    sv.positions = "all"
    with pytest.raises(ValueError, match="residual stream"):
        scalpel.export_control_vector(m, sv, str(tmp_path / "x.gguf"))
    sv.vectors = [torch.randn(3), sv.vectors[1]]
    with pytest.raises(ValueError, match=r"shape \[8\]"):
        sv.attach(m)
    with pytest.raises(ValueError, match="nearest"):
        scalpel.SteeringVector.create(m, ["blocks.1.hook_resid_pots"])
    with pytest.raises(ValueError, match="paired"):
        scalpel.SteeringVector.from_contrast(m, ["blocks.1.hook_resid_post"], _prompts(3, 1), _prompts(4, 2),
                                             method="pca_diff")


@pytest.mark.unit
def test_optimizing_from_the_mean_difference_lowers_the_harm_and_keeps_the_bound():
    """One-shot steering (promote / suppress a completion on one example) is this with one row."""
    m = scalpel.Transformer.from_config(json.dumps(LLAMA), seed=0, init_std=0.2)
    prompts = _prompts(6, 3)
    data = scalpel.BreakerData(prompts, [[1 + i] for i in range(6)], [[40 + i] for i in range(6)],
                               [[3, 4, 5, 6, 7, 8], [9, 10, 11, 12]])
    sv = scalpel.SteeringVector.from_contrast(m, ["blocks.1.hook_resid_post"], _prompts(6, 4), _prompts(6, 5))
    sv.max_norm = 4.0
    before = scalpel.harm_score(m, data.prompts, data.harmful, data.neutral)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.warmup_steps = 40, 6, 0.1, 2
    res = scalpel.train_steering(m, sv, data, scalpel.BreakerObjective(harm="margin", lambda_preserve=1.0), o)
    assert res.steps == 40 and len(res.parts["preserve"]) == 40
    with sv.attach(m):
        after = scalpel.harm_score(m, data.prompts, data.harmful, data.neutral)
    assert float(after.mean()) < float(before.mean()) - 0.5
    assert float(sv.effective_vectors()[0].norm()) <= 4.0 + 1e-5
    # one-shot: a single row, the completion pushed down
    one = scalpel.BreakerData(prompts[:1], [[1]], [[40]])
    sv1 = scalpel.SteeringVector.create(m, ["blocks.1.hook_resid_post"])
    o.batch_size = 1
    scalpel.train_steering(m, sv1, one, scalpel.BreakerObjective(harm="margin", preserve="none"), o)
    with sv1.attach(m):
        h1 = scalpel.harm_score(m, one.prompts, one.harmful, one.neutral)
    assert float(h1[0]) < float(scalpel.harm_score(m, one.prompts, one.harmful, one.neutral)[0]) - 1.0
