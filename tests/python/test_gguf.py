"""GGUF: scalpel's reader and dequantizer against the `gguf` package (the oracle).

Every comparison of dequantized values is bit-exact: scalpel's kernels do the
same float32 operations in the same order as the package's numpy code.
"""
from __future__ import annotations

import struct
from unittest import mock

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

import scalpel


def _reader(path):
    """gguf.GGUFReader over a plain ndarray view of its memmap: the same parse,
    minus np.memmap's per-slice overhead (25 s -> 6 s on the Gemma 3 vocabulary)."""
    memmap = np.memmap
    with mock.patch.object(np, "memmap", lambda p, mode="r": memmap(p, mode=mode).view(np.ndarray)):
        return gguf.GGUFReader(path)


def _same_bits(got: torch.Tensor, ref: np.ndarray) -> bool:
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    return tuple(got.shape) == ref.shape and np.array_equal(got.numpy().view(np.uint32), ref.view(np.uint32))


def _fields(reader):
    return {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _check_metadata(f: scalpel.GGUFFile, reader) -> None:
    """Keys (in order), GGUF types, and native values equal the reader's."""
    fields = _fields(reader)
    assert f.keys() == list(fields)
    meta = f.metadata()
    assert list(meta) == list(fields)
    for key, field in fields.items():
        value = f.value(key)
        assert value.type == field.types[0].name, key
        if value.is_array:
            assert value.array_type == field.types[1].name, key
            assert len(value) == len(field.data) or field.types[1] == VT.ARRAY, key
            if field.types[1] == VT.ARRAY:
                continue  # the reader flattens arrays of arrays; checked against the writer's input instead
        ref = field.contents()
        got = f.get(key)
        assert got == ref, key
        assert meta[key] == ref, key
        for g, r in zip(got if isinstance(got, list) else [got], ref if isinstance(ref, list) else [ref]):
            assert type(g) is type(r), (key, type(g), type(r))


def _check_tensor_infos(f: scalpel.GGUFFile, reader) -> None:
    assert f.data_offset == reader.data_offset
    assert f.alignment == reader.alignment
    assert [t.name for t in f.tensors()] == [t.name for t in reader.tensors]
    for info, ref in zip(f.tensors(), reader.tensors):
        assert info.type == ref.tensor_type.name and info.type_id == int(ref.tensor_type), info.name
        assert info.dims == [int(d) for d in ref.shape], info.name
        assert info.shape == list(reversed(info.dims))
        assert f.data_offset + info.offset == ref.data_offset, info.name
        assert info.nbytes == ref.n_bytes and info.numel == ref.n_elements, info.name
        assert f.tensor_info(info.name).offset == info.offset and f.has_tensor(info.name)


# ---------------------------------------------------------------------------
# (1) The real Gemma 3 270M file
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(gemma3_path):
    return scalpel.GGUFFile(gemma3_path), _reader(str(gemma3_path))


@pytest.mark.oracle
def test_real_header_and_metadata(real):
    f, reader = real
    assert f.version == 3 == int(reader.fields["GGUF.version"].contents())
    assert f.file_size == reader.data.size
    assert f.architecture() == "gemma3"
    _check_metadata(f, reader)
    assert len(f.get("tokenizer.ggml.tokens")) == 262144


@pytest.mark.oracle
def test_real_tensor_infos(real):
    f, reader = real
    assert len(f.tensors()) == len(f) == 236
    assert {t.type for t in f.tensors()} == {"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"}
    emb = f.tensor_info("token_embd.weight")
    assert emb.type == "Q8_0" and emb.dims == [640, 262144] and emb.shape == [262144, 640]
    _check_tensor_infos(f, reader)


@pytest.mark.oracle
def test_real_every_tensor_dequantizes_exactly(real):
    """float32: bit-identical to gguf.quants.dequantize; bfloat16 / float16: that
    float32 result rounded to nearest even (torch's .to())."""
    f, reader = real
    bad = []
    for i, t in enumerate(reader.tensors):
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        if not _same_bits(f.dequantize(t.name), ref):
            bad.append(t.name)
            continue
        ref = np.ascontiguousarray(ref)
        ref_t = torch.from_numpy(ref if ref.flags.writeable else ref.copy())
        if not torch.equal(f.dequantize(t.name, torch.bfloat16).view(torch.int16),
                           ref_t.to(torch.bfloat16).view(torch.int16)):
            bad.append(t.name + " (bfloat16)")
        if i % 20 == 0 and not torch.equal(f.dequantize(t.name, dtype=torch.float16), ref_t.to(torch.float16)):
            bad.append(t.name + " (float16)")
    assert not bad, f"{len(bad)} tensors differ from gguf.quants.dequantize: {bad[:10]}"


@pytest.mark.oracle
def test_real_raw_bytes(real):
    f, reader = real
    for t in reader.tensors[:12]:
        raw = f.raw(t.name)
        assert raw.dtype == torch.uint8 and raw.numel() == t.n_bytes
        assert np.array_equal(raw.numpy(), np.asarray(t.data).reshape(-1).view(np.uint8))
        assert torch.equal(f.tensor_data(t.name), raw)


@pytest.mark.oracle
def test_real_from_parts_equals_assembled_file(real):
    from scalpel.packaged import packaged_model_parts

    f, _ = real
    parts = packaged_model_parts()
    assert len(parts) > 1
    g = scalpel.GGUFFile.from_parts(parts)
    assert g.path == str(parts[0])
    assert (g.version, g.file_size, g.alignment, g.data_offset) == (f.version, f.file_size, f.alignment, f.data_offset)
    assert g.metadata() == f.metadata()
    assert [(t.name, t.type, t.dims, t.offset, t.nbytes) for t in g.tensors()] == \
           [(t.name, t.type, t.dims, t.offset, t.nbytes) for t in f.tensors()]
    for name in ["token_embd.weight", g.tensors()[-1].name]:
        assert torch.equal(g.raw(name), f.raw(name))
    for name in ["blk.0.attn_q.weight", "blk.17.ffn_down.weight", "output_norm.weight"]:
        assert torch.equal(g.dequantize(name), f.dequantize(name))


# ---------------------------------------------------------------------------
# (2) Random blocks of every type scalpel dequantizes
# ---------------------------------------------------------------------------
# Byte offsets of the fp16 scale fields in one block of each type.
HALF_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0], "TQ1_0": [52], "TQ2_0": [64], "MXFP4": [],
}
ORACLE_TYPES = ["F32", "F16", "BF16", *[t for t in HALF_FIELDS if t not in ("Q8_1",)]]


def _finite_halves(rng, n: int) -> np.ndarray:
    """Random finite fp16 bit patterns: any sign and mantissa, exponent 0..30
    (zeros and subnormals included, never inf or NaN)."""
    sign = rng.integers(0, 2, n, dtype=np.uint16) << 15
    exp = rng.integers(0, 31, n, dtype=np.uint16) << 10
    return sign | exp | rng.integers(0, 1 << 10, n, dtype=np.uint16)


def _random_blocks(type_name: str, n_blocks: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = scalpel.ggml_type_size(type_name)
    blocks = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    if type_name == "F16":
        return _finite_halves(rng, n_blocks).view(np.uint8).reshape(n_blocks, size)
    if type_name in ("F32", "Q8_K"):  # finite float32 values (the whole row / the scale)
        vals = rng.standard_normal(n_blocks).astype(np.float32) * 10.0
        blocks[:, :4] = vals.view(np.uint8).reshape(n_blocks, 4)
    if type_name == "MXFP4":  # e8m0 scales small enough that no product overflows
        blocks[:, 0] = rng.integers(0, 240, n_blocks, dtype=np.uint8)
    for off in HALF_FIELDS.get(type_name, []):
        blocks[:, off:off + 2] = _finite_halves(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return blocks


@pytest.mark.parametrize("type_name", ORACLE_TYPES)
@pytest.mark.oracle
def test_random_blocks_equal_gguf(type_name):
    qtype = QT[type_name]
    assert scalpel.ggml_can_dequantize(type_name) and scalpel.ggml_can_dequantize(int(qtype))
    assert (scalpel.ggml_block_size(type_name), scalpel.ggml_type_size(type_name)) == gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = 4096 if scalpel.ggml_block_size(type_name) == 1 else 512
    blocks = _random_blocks(type_name, n_blocks, seed=int(qtype))
    ref = gguf.quants.dequantize(blocks.reshape(-1) if scalpel.ggml_block_size(type_name) == 1 else blocks, qtype)
    got = scalpel.dequantize_blocks(type_name, torch.from_numpy(blocks.reshape(-1)))
    assert got.dtype == torch.float32 and got.shape == (n_blocks * scalpel.ggml_block_size(type_name),)
    assert _same_bits(got, np.asarray(ref).reshape(-1))
    # dequantize_row over a prefix of whole blocks gives the same values.
    n = 2 * scalpel.ggml_block_size(type_name)
    assert torch.equal(scalpel.dequantize_row(int(qtype), torch.from_numpy(blocks.reshape(-1)), n), got[:n])


@pytest.mark.unit
def test_types_without_oracle():
    """Q8_1 (ggml's 36-byte block: fp16 d, fp16 sum, 32 int8), Q8_K (float32 d,
    256 int8, 16 int16 sums) and F64 have no dequantizer in the gguf package:
    y = d * q, and float64 rounded to float32."""
    for name, d_dtype, header, qk in [("Q8_1", np.float16, 4, 32), ("Q8_K", np.float32, 4, 256)]:
        blocks = _random_blocks(name, 64, seed=qk)
        d = blocks[:, : np.dtype(d_dtype).itemsize].copy().view(d_dtype).astype(np.float32)
        q = blocks[:, header:header + qk].view(np.int8).astype(np.float32)
        assert _same_bits(scalpel.dequantize_blocks(name, torch.from_numpy(blocks.reshape(-1))), (q * d).reshape(-1))
    x = np.random.default_rng(1).standard_normal(100) * 1e3
    assert _same_bits(scalpel.dequantize_blocks("F64", torch.from_numpy(x.view(np.uint8))), x.astype(np.float32))


@pytest.mark.oracle
def test_type_table_equals_gguf():
    for t in QT:
        if t in (QT.NVFP4, QT.Q1_0):  # newer than scalpel's table
            with pytest.raises(ValueError):
                scalpel.ggml_type_name(int(t))
            continue
        assert scalpel.ggml_type_name(int(t)) == t.name == scalpel.ggml_type_name(t.name)
        assert scalpel.ggml_type_from_name(t.name) == int(t)
        if t != QT.Q8_1:  # gguf-py still lists Q8_1 with float32 d and s (40 bytes); ggml's block is 36
            assert (scalpel.ggml_block_size(int(t)), scalpel.ggml_type_size(t.name)) == gguf.GGML_QUANT_SIZES[t]
    assert scalpel.ggml_type_size("Q8_1") == 36
    assert not scalpel.ggml_can_dequantize("IQ2_XXS") and not scalpel.ggml_can_dequantize(4)
    with pytest.raises(ValueError, match="Q4_K"):
        scalpel.ggml_type_name("Q4_2")
    with pytest.raises(ValueError):
        scalpel.ggml_block_size(4)
    with pytest.raises(scalpel.UnsupportedError, match="IQ2_XXS"):
        scalpel.dequantize_blocks("IQ2_XXS", torch.zeros(66, dtype=torch.uint8))
    with pytest.raises(ValueError, match="multiple"):
        scalpel.dequantize_blocks("Q8_0", torch.zeros(35, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        scalpel.dequantize_blocks("Q8_0", torch.zeros(34))
    assert scalpel.gguf_value_type_name(9) == "ARRAY"


# ---------------------------------------------------------------------------
# (3) A file written by gguf.GGUFWriter
# ---------------------------------------------------------------------------
NESTED = {"nested.ints": [[1, 2, 3], [4], [5, 6]], "nested.strs": [["a", "b"], ["ç"]],
          "nested.deep": [[[1.5], [2.5, 3.5]], [[4.5]]]}


def _write_file(path):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 0.1)
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.str", "héllo\nwörld \"q\"")
    w.add_string("t.empty", "")
    w.add_array("a.ints", [1, -2, 3])
    w.add_array("a.floats", [0.5, -1.25, 3.0])
    w.add_array("a.strs", ["x", "", "ÿ"])
    w.add_array("a.bools", [True, False])
    w.add_key_value("a.u8", [1, 2, 255], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("a.u64", [0, 2**64 - 1], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("a.f64", [0.1, -2.5], VT.ARRAY, sub_type=VT.FLOAT64)
    for k, v in NESTED.items():
        w.add_array(k, v)

    rng = np.random.default_rng(7)
    tensors = {
        "f32": rng.standard_normal((3, 64)).astype(np.float32),
        "f16": rng.standard_normal((5, 32)).astype(np.float16),
        "vec": rng.standard_normal(7).astype(np.float32),
        "i32": np.arange(12, dtype=np.int32).reshape(3, 4),
        "f64": rng.standard_normal((2, 3)) * 1e3,
    }
    for name, t in tensors.items():
        w.add_tensor(name, t)
    quantized = {
        "bf16": (gguf.quants.quantize(rng.standard_normal((4, 8)).astype(np.float32), QT.BF16), QT.BF16),
        "q8_0": (gguf.quants.quantize(rng.standard_normal((2, 3, 64)).astype(np.float32), QT.Q8_0), QT.Q8_0),
        "q4_0": (gguf.quants.quantize(rng.standard_normal((6, 32)).astype(np.float32), QT.Q4_0), QT.Q4_0),
        "q6_k": (_random_blocks("Q6_K", 4, seed=3).reshape(2, -1), QT.Q6_K),
        "q4_k": (_random_blocks("Q4_K", 2, seed=4).reshape(1, -1), QT.Q4_K),
    }
    for name, (data, qtype) in quantized.items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.oracle
def test_writer_file_reads_back(tmp_path):
    path = tmp_path / "w.gguf"
    _write_file(path)
    reader = _reader(str(path))
    f = scalpel.GGUFFile(path)
    assert f.alignment == 64 and f.data_offset % 64 == 0
    assert f.version == 3 and f.file_size == path.stat().st_size
    _check_metadata(f, reader)
    _check_tensor_infos(f, reader)
    for key, value in NESTED.items():
        assert f.get(key) == value
        assert f.value(key).array_type == "ARRAY"
    assert f.get("t.u64") == 2**64 - 1 and f.get("a.u64") == [0, 2**64 - 1]
    assert f.get("t.f32") == float(np.float32(0.1)) and f.get("t.f64") == 0.1
    assert f.value("a.u8").array_type == "UINT8" and f.value("a.u8").as_int_array() == [1, 2, 255]
    assert f.value("t.str").to_json() == '"héllo\\nwörld \\"q\\""'
    assert f.architecture() == "llama"

    for t in reader.tensors:
        info = f.tensor_info(t.name)
        if t.tensor_type == QT.I32:
            assert not scalpel.ggml_can_dequantize(info.type)
            with pytest.raises(scalpel.UnsupportedError, match="I32"):
                f.dequantize(t.name)
            assert np.array_equal(f.raw(t.name).numpy().view(np.int32).reshape(info.shape), t.data)
            continue
        ref = t.data.astype(np.float32) if t.tensor_type in (QT.F32, QT.F16, QT.F64) else \
            gguf.quants.dequantize(t.data, t.tensor_type)
        assert _same_bits(f.dequantize(t.name), ref), t.name
        assert f.raw(t.name).numel() == t.n_bytes


# ---------------------------------------------------------------------------
# (5) Errors
# ---------------------------------------------------------------------------
@pytest.mark.unit
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        scalpel.GGUFFile(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError):
        scalpel.GGUFFile.from_parts([tmp_path / "missing.part0"])


@pytest.mark.oracle
def test_truncated_file_names_file_and_offset(tmp_path):
    path = tmp_path / "w.gguf"
    _write_file(path)
    data = path.read_bytes()
    reader = _reader(str(path))
    last = reader.tensors[-1]
    cut_points = [3, 10, 30, 200, reader.data_offset - 5, reader.data_offset + 1, last.data_offset + last.n_bytes - 1]
    for n in cut_points:
        cut = tmp_path / f"cut{n}.gguf"
        cut.write_bytes(data[:n])
        with pytest.raises(scalpel.FormatError) as e:
            scalpel.GGUFFile(cut)
        msg = str(e.value)
        assert str(cut) in msg and "byte offset" in msg and ("truncated" in msg or "left in the file" in msg), msg


def _header(version=3, n_tensors=0, kvs=()):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + b"".join(kvs)


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + payload


@pytest.mark.parametrize("data,fragment", [
    (b"GGML" + bytes(20), "magic"),
    (_header(version=1), "version"),
    (_header(version=4), "version"),
    (_header(kvs=[_kv("a", 4, struct.pack("<I", 1)), _kv("a", 4, struct.pack("<I", 2))]), "unique metadata keys"),
    (_header(kvs=[_kv("general.alignment", 4, struct.pack("<I", 48))]), "power of two"),
    (_header(kvs=[_kv("k", 13, bytes(8))]), "value type"),
    (_header(n_tensors=10**12), "tensor count"),
])
@pytest.mark.oracle
def test_malformed_headers(tmp_path, data, fragment):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(scalpel.FormatError, match=fragment):
        scalpel.GGUFFile(path)
    with pytest.raises(Exception):  # ... and the gguf package refuses them too
        gguf.GGUFReader(str(path))


@pytest.mark.oracle
def test_unknown_names(tmp_path):
    path = tmp_path / "w.gguf"
    _write_file(path)
    f = scalpel.GGUFFile(path)
    with pytest.raises(KeyError, match=r"nearest: .*\"t\.u32\""):
        f.get("t.u33")
    with pytest.raises(KeyError):
        f["missing"]
    with pytest.raises(KeyError, match="nearest"):
        f.tensor_info("f31")
    with pytest.raises(ValueError):  # UnknownNameError is also a ValueError
        f.dequantize("f31")
    assert "t.u32" in f and "t.u33" not in f
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        f.dequantize("f32", torch.float64)
    with pytest.raises(ValueError, match="an integer"):
        f.value("t.str").as_int()
