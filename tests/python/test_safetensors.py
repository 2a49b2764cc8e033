"""safetensors: scalpel's reader and writer against the `safetensors` package."""
from __future__ import annotations

import struct

import pytest
import safetensors.torch as st
import torch

import scalpel

pytestmark = pytest.mark.oracle

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16,
          torch.uint32, torch.uint64]


def _tensors():
    g = torch.Generator().manual_seed(0)
    out = {}
    for i, dt in enumerate(DTYPES):
        x = torch.randn(3, 5, generator=g) * 10
        out[f"t{i}.{str(dt).split('.')[-1]}"] = x.abs().to(dt) if not dt.is_floating_point else x.to(dt)
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 4)
    out["a.long.name/with:odd chars é"] = torch.arange(4, dtype=torch.float32)
    return out


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_writer_bytes_equal_safetensors_package(tmp_path, metadata):
    t = _tensors()
    st.save_file(t, tmp_path / "ref.safetensors", metadata=metadata)
    scalpel.save_safetensors(str(tmp_path / "ours.safetensors"), t, metadata)
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()


def test_many_metadata_keys_same_content(tmp_path):
    meta = {"zeta": "1", "alpha": "2", "quote\"d": "é\n", "b": ""}
    scalpel.save_safetensors(str(tmp_path / "m.safetensors"), {"x": torch.ones(2)}, meta)
    from safetensors import safe_open

    with safe_open(tmp_path / "m.safetensors", "pt") as f:
        assert f.metadata() == meta
        assert torch.equal(f.get_tensor("x"), torch.ones(2))


def test_reader_equals_package_on_package_file(tmp_path):
    t = _tensors()
    st.save_file(t, tmp_path / "ref.safetensors", metadata={"k": "v"})
    f = scalpel.SafetensorsFile(str(tmp_path / "ref.safetensors"))
    assert f.metadata == {"k": "v"}
    assert set(f.keys()) == set(t)
    for k, v in t.items():
        got = f[k]
        assert got.dtype == v.dtype and got.shape == v.shape
        # Compare bytes: bit-exact, and defined for every dtype (float8 has no ==).
        assert got.reshape(-1).view(torch.uint8).tolist() == v.reshape(-1).view(torch.uint8).tolist(), k


def test_zero_copy_and_file_untouched(tmp_path):
    path = tmp_path / "w.safetensors"
    st.save_file({"w": torch.ones(64)}, path)
    before = path.read_bytes()
    f = scalpel.SafetensorsFile(str(path))
    assert f.is_zero_copy("w")
    w = f["w"]
    w.mul_(7)
    del f
    assert w.sum().item() == 7 * 64
    assert path.read_bytes() == before


def test_load_and_sharded(tmp_path):
    st.save_file({"a": torch.ones(2)}, tmp_path / "model-00001-of-00002.safetensors")
    st.save_file({"b": torch.zeros(3)}, tmp_path / "model-00002-of-00002.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"metadata": {"total_size": 20}, "weight_map": {"a": "model-00001-of-00002.safetensors", '
        '"b": "model-00002-of-00002.safetensors"}}')
    d = scalpel.load_safetensors(str(tmp_path))
    assert set(d) == {"a", "b"} and d["a"].sum() == 2


def _raw(tmp_path, header: bytes, data: bytes = b"", n: int | None = None):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", len(header) if n is None else n) + header + data)
    return str(p)


@pytest.mark.parametrize("header,data,n,fragment", [
    (b"", b"", None, "empty header"),
    (b"{}", b"", 10**6, "truncated"),
    (b"{", b"", None, "well-formed JSON"),
    (b'{"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}', b"x", None, '"Q8"'),
    (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"xxxx", None, "8 bytes"),
    (b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}',
     b"xxx", None, "overlaps"),
    (b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', b"xx", None, "truncated"),
])
def test_malformed_files_raise_format_error(tmp_path, header, data, n, fragment):
    with pytest.raises(scalpel.FormatError, match=fragment.replace("[", r"\[")):
        scalpel.SafetensorsFile(_raw(tmp_path, header, data, n))
    # ... and the package agrees these files are invalid.
    with pytest.raises(Exception):
        st.load_file(_raw(tmp_path, header, data, n))


def test_error_types(tmp_path):
    with pytest.raises(FileNotFoundError):
        scalpel.SafetensorsFile(str(tmp_path / "missing.safetensors"))
    st.save_file({"w": torch.ones(1)}, tmp_path / "w.safetensors")
    f = scalpel.SafetensorsFile(str(tmp_path / "w.safetensors"))
    with pytest.raises(KeyError):
        f["v"]
    with pytest.raises(ValueError, match="nearest"):
        f["ww"]
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04")
    with pytest.raises(scalpel.FormatError, match="never unpickles"):
        scalpel.SafetensorsCheckpoint.open(str(tmp_path / "pytorch_model.bin"))
    with pytest.raises(ValueError):
        scalpel.save_safetensors(str(tmp_path / "c.safetensors"), {"c": torch.ones(2, dtype=torch.complex64)})


def test_real_model_matches_package(shared):
    from safetensors import safe_open

    for sub in ("tinystories-656k", "tinystories-656k-bf16"):
        path = shared / "models" / sub / "model.safetensors"
        ours = scalpel.SafetensorsFile(str(path))
        with safe_open(path, "pt") as ref:
            assert set(ours.keys()) == set(ref.keys())
            assert ours.metadata == ref.metadata()
            for k in ref.keys():
                assert torch.equal(ours[k], ref.get_tensor(k)), k
