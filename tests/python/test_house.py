"""The house's one-per-meaning pieces, from Python: hook names (built and parsed
in one place), the atomic writers and the row reader."""
from __future__ import annotations

import json
import os

import pytest

import scalpel

pytestmark = pytest.mark.unit

CFG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
       "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
       "max_position_embeddings": 64, "rms_norm_eps": 1e-6}


def test_every_hook_name_of_a_model_parses_back_to_itself():
    model = scalpel.Transformer.from_config(json.dumps(CFG), seed=0)
    names = model.hook_names()
    assert len(names) == len(set(names)) > 3 * 20
    layers = set()
    for n in names:
        h = scalpel.HookName.parse(n)
        assert h.str() == n and scalpel.hook_name(h.component, h.layer) == n
        assert scalpel.hook_layer(n) == h.layer
        layers.add(h.layer)
    assert layers == {-1, 0, 1, 2}
    # the table's order is the forward order the model uses
    order = [c.name for c in scalpel.hook_components()]
    block0 = [scalpel.HookName.parse(n).component for n in names if n.startswith("blocks.0.")]
    assert block0 == sorted(block0, key=order.index)


def test_names_as_transformer_lens_writes_them():
    assert scalpel.hook_name("z", 3) == "blocks.3.attn.hook_z"
    assert scalpel.hook_name("resid_pre", 0) == "blocks.0.hook_resid_pre"
    assert scalpel.hook_name("post", 2) == "blocks.2.mlp.hook_post"  # TransformerLens' alias
    assert scalpel.hook_name("embed") == "hook_embed"
    assert scalpel.hook_name("ln_final_scale") == "ln_final.hook_scale"
    assert scalpel.HookName("pattern", 1) == scalpel.HookName.parse("blocks.1.attn.hook_pattern")
    assert scalpel.HookName.try_parse("blocks.01.hook_resid_pre") is None
    assert scalpel.HookName.try_parse("blocks.1.hook_embed") is None  # outside the blocks
    assert scalpel.HookName.try_parse("hook_resid_pre") is None       # needs a layer


def test_bad_names_say_what_is_near():
    with pytest.raises(scalpel.UnknownNameError, match="blocks.0.attn.hook_z"):
        scalpel.HookName.parse("blocks.3.attn.hook_zz")
    with pytest.raises(scalpel.UnknownNameError, match="resid_pre"):
        scalpel.hook_name("resid_pree", 1)
    with pytest.raises(ValueError, match="layer"):
        scalpel.hook_name("z")            # a block component needs a layer
    with pytest.raises(ValueError, match="outside the blocks"):
        scalpel.hook_name("embed", 2)


def test_atomic_writers(tmp_path):
    f = tmp_path / "a.txt"
    scalpel.write_file_atomic(str(f), "one")
    scalpel.write_file_atomic(f, b"\x00two")
    assert f.read_bytes() == b"\x00two"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # no temporary left behind

    out = tmp_path / "dir"

    def fill(d):
        (tmp_path / "seen").write_text(d)
        scalpel.write_file_atomic(os.path.join(d, "x.json"), "{}")

    scalpel.write_directory_atomic(out, fill)
    assert (out / "x.json").read_text() == "{}"
    assert (tmp_path / "seen").read_text() != str(out)  # filled elsewhere, renamed in
    with pytest.raises(Exception, match="overwrite"):
        scalpel.write_directory_atomic(out, fill)
    # a failing fill leaves the old directory as it was
    with pytest.raises(RuntimeError, match="boom"):
        scalpel.write_directory_atomic(out, lambda d: (_ for _ in ()).throw(RuntimeError("boom")), overwrite=True)
    assert (out / "x.json").read_text() == "{}"
    with pytest.raises(Exception):
        scalpel.write_directory_atomic(tmp_path, fill, overwrite=True, protect=out)  # contains the source


def test_row_reader(tmp_path):
    j = tmp_path / "r.jsonl"
    j.write_text('{"a": 1}\n\n// a comment\n  \n[2, "x"]\n"s"\n')
    assert scalpel.read_rows(j) == [{"a": 1}, [2, "x"], "s"]
    assert scalpel.read_rows(j, limit=1) == [{"a": 1}]
    lst = tmp_path / "r.json"
    lst.write_text('[{"instruction": "x"}, 3]')
    assert scalpel.read_rows(lst) == [{"instruction": "x"}, 3]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"a": 1}\n{nope\n')
    with pytest.raises(scalpel.FormatError, match="b.jsonl:2"):
        scalpel.read_rows(bad)
    (tmp_path / "c.json").write_text('{"not": "a list"}')
    with pytest.raises(scalpel.FormatError, match="a JSON list"):
        scalpel.read_rows(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError):
        scalpel.read_rows(tmp_path / "missing.jsonl")


def test_patch_into_is_the_patch_of_patch_hook():
    import torch

    torch.manual_seed(0)
    x, src = torch.randn(2, 5, 3, 4), torch.randn(1, 5, 3, 4)
    y = x.clone()
    scalpel.patch_into(y, src, positions=[1, -1], heads=[2])
    want = x.clone()
    want[:, [1, 4], 2] = src[:, [1, 4], 2].expand(2, -1, -1)
    assert torch.equal(y, want)
    # the suffix form: dst holds positions 3.. of the run
    tail = x[:, 3:].clone()
    scalpel.patch_into(tail, src, positions=[4], offset=3)
    assert torch.equal(tail[:, 1], src[:, 4].expand(2, -1, -1)) and torch.equal(tail[:, 0], x[:, 3])
    with pytest.raises(ValueError, match="position"):
        scalpel.patch_into(x.clone(), src, positions=[9])
