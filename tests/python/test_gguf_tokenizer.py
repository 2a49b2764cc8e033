"""Tokenizers read from GGUF metadata, against transformers' own GGUF conversion.

Oracle: the tokenizer transformers builds from the same GGUF file
(``<Class>.from_pretrained(dir, gguf_file=name)``, where ``<Class>`` is the
class ``AutoTokenizer`` picks for the file's architecture; calling it directly
skips AutoTokenizer's model-config read, which parses the whole vocabulary a
second time with the slow ``gguf`` reader and does not touch the tokenizer).

Files:
  * the real Gemma 3 270M GGUF (tokenizer.ggml.model "llama", 262,144 tokens)
    from ``scalpel.packaged.packaged_model_path()``;
  * GGUFs written here with ``gguf.GGUFWriter`` the way llama.cpp's converter
    writes them, from the real tokenizers under $SCALPEL_SHARED/tokenizers:
    "llama" files from the SentencePiece models of Llama-2 and Mistral v0.3
    (pieces, scores, token types) and from Phi-3's tokenizer.json; "gpt2" files
    from GPT-2, Qwen2.5 (pre "qwen2") and SmolLM2 (pre "llama-bpe", the Llama-3
    split) with their merges;
  * small synthetic files for the corners (tokens listed twice, whitespace-only
    Gemma tokens, a byte-level vocabulary without "<|endoftext|>", mislabelled
    control tokens, user-defined tokens, missing special ids).

For every file: the tokenizer.json text equals ``backend_tokenizer.to_str()``
byte for byte; ids (with and without special tokens) and decodes (with and
without skip_special_tokens) are identical over tests/support/hard_strings.json,
the ../shared/data prompts of test_tokenizer_parity.py and random strings;
random id lists decode identically; special tokens, their ids and the vocabulary
size agree. Gemma files carry no chat template, so scalpel's built-in Gemma
template must render like the official Gemma 3 template.
"""
from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import gguf
import pytest
import transformers

import scalpel
from parity_util import random_id_lists

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "support"

RANDOM_STRINGS = 300
RANDOM_ID_LISTS = 300


# ───────────────────────── writing GGUF files (as llama.cpp) ─────────────────────────

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def write_gguf(path, arch, model, tokens, types=None, scores=None, merges=None, pre=None, ids=None,
               add_bos=None, add_eos=None, context=None, chat_template=None, extra=None):
    """A tokenizer-only GGUF file (no tensors)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    if scores is not None:
        w.add_token_scores(scores)
    if types is not None:
        w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    for kind, value in (ids or {}).items():
        if value is not None:
            getattr(w, f"add_{kind}_token_id")(value)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if add_eos is not None:
        w.add_add_eos_token(add_eos)
    if context is not None:
        w.add_context_length(context)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for key, value in (extra or {}).items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_uint32(key, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def sentencepiece_pieces(model_file: Path):
    """(piece, score, type) of a SentencePiece ModelProto, and add_dummy_prefix
    (a protobuf reader just big enough for these two fields)."""
    data = model_file.read_bytes()

    def varint(buf, pos):
        shift = value = 0
        while True:
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos

    def fields(buf):
        pos = 0
        while pos < len(buf):
            key, pos = varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = varint(buf, pos)
            elif wire == 1:
                value, pos = buf[pos:pos + 8], pos + 8
            elif wire == 2:
                n, pos = varint(buf, pos)
                value, pos = buf[pos:pos + n], pos + n
            elif wire == 5:
                value, pos = buf[pos:pos + 4], pos + 4
            else:
                raise ValueError(f"{model_file}: protobuf wire type {wire}")
            yield number, value

    pieces, add_prefix = [], True
    for number, value in fields(data):
        if number == 1:  # ModelProto.pieces
            piece, score, kind = None, 0.0, NORMAL
            for n, v in fields(value):
                if n == 1:
                    piece = v.decode("utf-8")
                elif n == 2:
                    score = struct.unpack("<f", v)[0]
                elif n == 3:
                    kind = v
            pieces.append((piece, score, kind))
        elif number == 3:  # ModelProto.normalizer_spec
            for n, v in fields(value):
                if n == 3:
                    add_prefix = bool(v)
    return pieces, add_prefix


def _looks_special(token: str) -> bool:
    # llama.cpp's converter marks these control even when not flagged special.
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (token.startswith("<|") and token.endswith("|>"))
            or token.startswith("<start_of_") or token.startswith("<end_of_"))


def _tokenizer_files(d: Path):
    """vocab, merges ("a b"), {id: (content, special)} and tokenizer_config of a tokenizer directory."""
    cfg = json.loads((d / "tokenizer_config.json").read_text()) if (d / "tokenizer_config.json").is_file() else {}
    if (d / "tokenizer.json").is_file():
        tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        vocab, merges = tj["model"]["vocab"], tj["model"].get("merges", [])
        added = {a["id"]: (a["content"], a["special"]) for a in tj["added_tokens"]}
    else:
        vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        merges = [line for line in (d / "merges.txt").read_text(encoding="utf-8").split("\n")[1:] if line]
        added = {int(i): (a["content"], a["special"]) for i, a in cfg.get("added_tokens_decoder", {}).items()}
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    return vocab, merges, added, cfg


def _llama_cpp_vocab(vocab, added, byte_level):
    """Tokens and token types in id order, as llama.cpp lists a tokenizer.json
    vocabulary: added special (or special-looking) tokens CONTROL, other added
    tokens USER_DEFINED, missing ids "[PADn]" UNUSED, "<0xNN>" BYTE."""
    size = max(max(vocab.values()), max(added, default=-1)) + 1
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(size):
        if i in added:
            content, special = added[i]
            if special or _looks_special(content):
                tokens.append(content)
                types.append(CONTROL)
            else:
                tokens.append(content if byte_level else content.replace("\u2581", " "))
                types.append(USER_DEFINED)
        elif i in by_id:
            t = by_id[i]
            is_byte = not byte_level and len(t) == 6 and t.startswith("<0x") and t.endswith(">")
            tokens.append(t)
            types.append(BYTE if is_byte else UNKNOWN if t == "<unk>" and not byte_level else NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
    return tokens, types


def _ids_of(tokens, named):
    index = {t: i for i, t in enumerate(tokens)}
    return {kind: (index[v] if isinstance(v, str) else v) for kind, v in named.items()}


def build_sentencepiece(out: Path, shared: Path, name: str, arch="llama"):
    d = shared / "tokenizers" / name
    pieces, add_prefix = sentencepiece_pieces(d / "tokenizer.model")
    cfg = json.loads((d / "tokenizer_config.json").read_text())

    def token(key):
        v = cfg.get(key)
        return v["content"] if isinstance(v, dict) else v

    tokens = [p for p, _, _ in pieces]
    named = {k: token(f"{k}_token") for k in ("bos", "eos", "unk", "pad")}
    return write_gguf(out, arch, "llama", tokens, types=[t for _, _, t in pieces], scores=[s for _, s, _ in pieces],
                      pre="default", ids=_ids_of(tokens, {k: v for k, v in named.items() if v}),
                      add_bos=cfg.get("add_bos_token"), add_eos=cfg.get("add_eos_token"), context=4096,
                      extra={"tokenizer.ggml.add_space_prefix": add_prefix})


def build_byte_level(out: Path, shared: Path, name: str, arch: str, pre: str, named: dict, **kw):
    vocab, merges, added, _ = _tokenizer_files(shared / "tokenizers" / name)
    tokens, types = _llama_cpp_vocab(vocab, added, byte_level=True)
    return write_gguf(out, arch, "gpt2", tokens, types=types, merges=merges, pre=pre, ids=_ids_of(tokens, named), **kw)


def build_sentencepiece_json(out: Path, shared: Path, name: str, arch: str, named: dict, **kw):
    """A "llama" file from a SentencePiece-style tokenizer.json (no tokenizer.model):
    scores -id for normal pieces, 0 otherwise (SentencePiece ranks pieces that way)."""
    vocab, _, added, _ = _tokenizer_files(shared / "tokenizers" / name)
    tokens, types = _llama_cpp_vocab(vocab, added, byte_level=False)
    scores = [-float(i) if t == NORMAL else 0.0 for i, t in enumerate(types)]
    return write_gguf(out, arch, "llama", tokens, types=types, scores=scores, pre="default",
                      ids=_ids_of(tokens, named), **kw)


def _byte_alphabet():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return [bytes_to_unicode()[b] for b in range(256)]


def build_synthetic_byte_level(out: Path):
    """Byte-level vocabulary with no "<|endoftext|>" (GPT2Tokenizer adds it at a
    new id), a control token spelled outside the byte alphabet (skipped), a
    user-defined token with a space (not in the respelled vocabulary: skipped),
    a token spelled with raw UTF-8 (respelled), and a token listed twice."""
    tokens = _byte_alphabet()
    words = ["Ġt", "he", "Ġthe", "in", "Ġa", "an", "Ġan", "er", "on", "Ġo", "re", "at", "en", "is", "Ġis", "it", "ing"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "a n", "Ġa n", "e r", "o n", "Ġ o", "r e", "a t", "e n", "i s",
              "Ġ is", "i t", "in g"]
    tokens += words + ["é", "he"]
    types = [NORMAL] * len(tokens)
    specials = [("<|begin_of_text|>", CONTROL), ("<|eot_id|>", CONTROL), ("\u2581bad", CONTROL),
                ("<think>", USER_DEFINED), ("my token", USER_DEFINED), ("</think>", USER_DEFINED)]
    for t, k in specials:
        tokens.append(t)
        types.append(k)
    return write_gguf(out, "llama", "gpt2", tokens, types=types, merges=merges, pre="llama-bpe",
                      ids=_ids_of(tokens, {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>"}), add_bos=True,
                      add_eos=True)


def build_synthetic_gemma(out: Path):
    """Gemma rules on a small vocabulary: whitespace-only tokens with a space
    respelled as "▁"*n (one of them then duplicates an existing "▁▁"), no
    "<mask>" (GemmaTokenizer adds it), no padding id, merges from token order."""
    tokens = ["<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += ["\u2581", "a", "b", "c", "\n", "ab", "\u2581a", "\u2581ab", "bc", "abc", "\u2581\u2581", "  ",
               " \n", "\t", "   ", "\u2581abc", "ca", "\u2581c"]
    types = [CONTROL] * 3 + [BYTE] * 256 + [NORMAL] * (len(tokens) - 259)
    tokens += ["<start_of_turn>", "<end_of_turn>", "[multimodal]"]
    types += [CONTROL, CONTROL, USER_DEFINED]
    scores = [-1000.0] * len(tokens)
    return write_gguf(out, "gemma3", "llama", tokens, types=types, scores=scores, pre="default",
                      ids=_ids_of(tokens, {"bos": "<bos>", "eos": "<eos>", "unk": "<unk>"}), add_bos=True,
                      add_eos=False, context=8192, extra={"tokenizer.ggml.add_space_prefix": False})


def build_synthetic_llama(out: Path):
    """SentencePiece rules on a small vocabulary without "<s>"/"</s>" (LlamaTokenizer
    adds them at new ids), a token listed twice, scores with ties, add_eos."""
    tokens = ["<unk>", "<|start|>", "<|end|>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256
    pieces = [("\u2581", -1.0), ("a", -2.0), ("b", -2.0), ("ab", -3.0), ("\u2581a", -3.0), ("\u2581ab", -4.0),
              ("ba", -4.0), ("bab", -5.0), ("ab", -6.0), ("\u2581b", -6.0), ("aba", -7.0)]
    tokens += [p for p, _ in pieces]
    types += [NORMAL] * len(pieces)
    scores = [0.0] * 259 + [s for _, s in pieces]
    tokens.append("<tool>")
    types.append(USER_DEFINED)
    scores.append(0.0)
    return write_gguf(out, "llama", "llama", tokens, types=types, scores=scores,
                      ids=_ids_of(tokens, {"bos": "<|start|>", "eos": "<|end|>", "unk": "<unk>"}), add_bos=True,
                      add_eos=True)


# Built files: name -> (builder, transformers class AutoTokenizer picks for the architecture).
def _cases(shared: Path):
    return {
        "llama-2": (lambda p: build_sentencepiece(p, shared, "llama-2-7b-hf"), "TokenizersBackend"),
        "mistral-v0.3": (lambda p: build_sentencepiece(p, shared, "mistral-7b-instruct-v0.3"), "TokenizersBackend"),
        "phi-3": (lambda p: build_sentencepiece_json(
            p, shared, "phi-3-mini-128k-instruct", "phi3",
            {"bos": "<s>", "eos": "<|endoftext|>", "unk": "<unk>", "pad": "<|endoftext|>"}, add_bos=False,
            add_eos=False), "TokenizersBackend"),
        "gpt2": (lambda p: build_byte_level(p, shared, "gpt2-xl", "gpt2", "gpt-2",
                                            {"bos": 50256, "eos": 50256}), "GPT2Tokenizer"),
        "qwen2.5": (lambda p: build_byte_level(
            p, shared, "qwen2.5-0.5b-instruct", "qwen2", "qwen2",
            {"bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|endoftext|>"}, add_bos=False, context=32768,
            chat_template=json.loads((shared / "tokenizers" / "qwen2.5-0.5b-instruct" /
                                      "tokenizer_config.json").read_text())["chat_template"]), "Qwen2Tokenizer"),
        "smollm2": (lambda p: build_byte_level(p, shared, "smollm2-135m-instruct", "llama", "llama-bpe",
                                               {"bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"},
                                               add_bos=True), "TokenizersBackend"),
        "synthetic-byte-level": (build_synthetic_byte_level, "TokenizersBackend"),
        "synthetic-gemma": (build_synthetic_gemma, "GemmaTokenizer"),
        "synthetic-llama": (build_synthetic_llama, "TokenizersBackend"),
    }


CASE_NAMES = ["gemma3-270m", "llama-2", "mistral-v0.3", "phi-3", "gpt2", "qwen2.5", "smollm2", "synthetic-byte-level",
              "synthetic-gemma", "synthetic-llama"]


# ─────────────────────────────────── fixtures ───────────────────────────────────


def _gemma_path() -> Path:
    try:
        from scalpel.packaged import packaged_model_path

        return Path(packaged_model_path())
    except ModuleNotFoundError as e:
        pytest.fail(f"the packaged Gemma 3 270M GGUF is not installed ({e}); `make test` installs it "
                    "(requirements.txt)", pytrace=False)


class Case:
    """One GGUF file: scalpel's conversion and transformers' (computed once)."""

    def __init__(self, name: str, path: Path, oracle_class: str):
        self.name, self.path, self.oracle_class = name, path, oracle_class
        self._oracle = self._ours = self._config = self._stale = None

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = json.loads(scalpel.gguf_tokenizer_config_json(str(self.path)))
        return self._config

    @property
    def stale_specials(self) -> set[int]:
        """Ids that transformers' tokenizer skips in decode(skip_special_tokens=True)
        although it lists them as not special: a token its tokenizer class first
        added as special (e.g. LlamaTokenizer's "</s>") and the file then re-adds
        as a plain USER_DEFINED token. `tokenizers` keeps the content in its set
        of special tokens, which tokenizer.json does not carry."""
        if self._stale is None:
            live = self.oracle.backend_tokenizer
            self._stale = {i for i, t in self.oracle.added_tokens_decoder.items()
                           if not t.special and live.decode([i], skip_special_tokens=False)
                           and not live.decode([i], skip_special_tokens=True)}
        return self._stale

    @property
    def oracle(self):
        if self._oracle is None:
            cls = getattr(transformers, self.oracle_class)
            self._oracle = cls.from_pretrained(str(self.path.parent), gguf_file=self.path.name)
        return self._oracle

    @property
    def ours(self):
        if self._ours is None:
            self._ours = scalpel.tokenizer_from_gguf(str(self.path))
        return self._ours


@pytest.fixture(scope="module")
def cases(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf_tokenizers")
    found = {"gemma3-270m": Case("gemma3-270m", _gemma_path(), "GemmaTokenizer")}
    for name, (build, oracle_class) in _cases(shared).items():
        found[name] = Case(name, build(out / f"{name}.gguf"), oracle_class)
    return found


@pytest.fixture(scope="module")
def corpus(shared):
    from test_tokenizer_parity import _data_prompts  # the same prompt sets as the tokenizer parity suite

    hard = json.loads((SUPPORT / "hard_strings.json").read_text(encoding="utf-8"))
    rng = random.Random(4321)
    alphabet = (" \t\n\r" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                + ".,;:!?'\"()[]{}<>|/\\-_=+*&^%$#@~`"
                + "éüßçñøœ日本語中文한국어العربيةहिन्दीไทย😀👍🏽\u200d\u2581▁" + "\u00a0\u3000\u2028\x0b\x1c")
    specials = ["<bos>", "<eos>", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<start_of_turn>",
                "<think>", "<unk>", "[INST]", "<|eot_id|>", "<mask>", "[multimodal]", "<pad>"]
    randoms = []
    for _ in range(RANDOM_STRINGS):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.4:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(specials))
        randoms.append(("" if rng.random() < 0.5 else " ").join(parts))
    strings = hard + _data_prompts(shared) + randoms
    assert len(strings) > 1000
    return strings


# ─────────────────────────────────── checks ────────────────────────────────────


@pytest.mark.parametrize("name", CASE_NAMES)
def test_tokenizer_json_is_transformers(cases, name):
    """gguf_tokenizer_json is the text of transformers' backend_tokenizer.to_str()."""
    case = cases[name]
    ours = scalpel.gguf_tokenizer_json(str(case.path))
    theirs = case.oracle.backend_tokenizer.to_str()
    if ours != theirs:  # say where, before failing on the text
        a, b = json.loads(ours), json.loads(theirs)
        assert a.keys() == b.keys()
        for key in b:
            assert a[key] == b[key], f"{name}: {key} differs"
    assert ours == theirs


@pytest.mark.parametrize("name", CASE_NAMES)
def test_ids_and_decode_match_transformers(cases, corpus, name):
    case = cases[name]
    hf, ours = case.oracle, case.ours
    strings = corpus
    for special in (True, False):
        want = hf(strings, add_special_tokens=special)["input_ids"]
        got = ours.encode_batch(strings, add_special_tokens=special)
        bad = [(s, g, w) for s, g, w in zip(strings, got, want) if g != w]
        assert not bad, f"{name}: {len(bad)}/{len(strings)} differ (add_special_tokens={special}), e.g. {bad[:2]}"
        if special:
            ids_lists = want
    _compare_decodes(case, ids_lists, "decodes of the encoded corpus")

    # Arbitrary ids: special ids, byte tokens, ids that split characters, the last ids.
    lists = random_id_lists(99, len(hf), RANDOM_ID_LISTS)
    _compare_decodes(case, lists, "random id lists")


def _compare_decodes(case, lists, what):
    """decode with and without skip_special_tokens equals transformers'; where a
    list holds a stale special id (see Case.stale_specials), skip_special_tokens
    follows the serialized tokenizer.json, as scalpel does."""
    from tokenizers import Tokenizer

    hf, ours = case.oracle, case.ours
    stale = case.stale_specials
    reloaded = Tokenizer.from_str(hf.backend_tokenizer.to_str()) if stale else None
    for skip in (False, True):
        want = hf.batch_decode(lists, skip_special_tokens=skip)
        bad = []
        for ids, w in zip(lists, want):
            if skip and stale & set(ids):
                w = reloaded.decode(ids, skip_special_tokens=True)
            if ours.decode(ids, skip_special_tokens=skip) != w:
                bad.append((ids, w))
        assert not bad, (f"{case.name}: {len(bad)} {what} decode differently (skip_special_tokens={skip}), "
                         f"e.g. {bad[:2]}")


def test_stale_special_tokens_are_the_known_quirk(cases):
    """Only Phi-3 (whose "</s>" is a USER_DEFINED token in its files) shows it."""
    assert {name: sorted(cases[name].oracle.convert_ids_to_tokens(sorted(cases[name].stale_specials)))
            for name in CASE_NAMES if cases[name].stale_specials} == {"phi-3": ["</s>"]}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_special_tokens_and_vocab_size(cases, name):
    case = cases[name]
    hf, ours = case.oracle, case.ours
    # largest id + 1; len(hf) counts distinct tokens, one less per token a vocabulary lists twice
    assert ours.vocab_size == max(hf.get_vocab().values()) + 1
    if name != "synthetic-byte-level":
        assert ours.vocab_size == len(hf)
    for kind in ("bos", "eos", "unk", "pad"):
        assert getattr(ours, f"{kind}_token") == getattr(hf, f"{kind}_token"), kind
        assert getattr(ours, f"{kind}_token_id") == getattr(hf, f"{kind}_token_id"), kind
    assert {t.id: (t.content, t.special) for t in ours.added_tokens} == {
        i: (t.content, t.special) for i, t in hf.added_tokens_decoder.items()}
    config = case.config
    assert config["add_bos_token"] == hf.add_bos_token
    assert config["add_eos_token"] == hf.add_eos_token


def test_oracle_classes_are_autotokenizers(cases):
    """The oracle classes are the ones AutoTokenizer picks: by the model type
    (checked on the registry, as AutoTokenizer itself parses the whole file
    again for the config), and by running AutoTokenizer on the small files."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES as names

    assert names["gemma3"] == names["gemma3_text"] == names["gemma2"] == names["gemma"] == "GemmaTokenizer"
    assert names["qwen2"] == "Qwen2Tokenizer" and names["gpt2"] == "GPT2Tokenizer"
    assert names["phi3"] == "TokenizersBackend" and names.get("llama") is None  # -> TokenizersBackend
    for name in ("synthetic-gemma", "synthetic-llama", "synthetic-byte-level"):
        case = cases[name]
        auto = transformers.AutoTokenizer.from_pretrained(str(case.path.parent), gguf_file=case.path.name)
        assert type(auto).__name__ == case.oracle_class
        assert auto.backend_tokenizer.to_str() == case.oracle.backend_tokenizer.to_str()


def test_gemma_file(cases):
    """The real file: what it says, and what scalpel adds (model_max_length, template)."""
    case = cases["gemma3-270m"]
    config = case.config
    assert config["bos_token"] == "<bos>" and config["eos_token"] == "<eos>" and config["pad_token"] == "<pad>"
    assert config["model_max_length"] == 32768  # gemma3.context_length
    assert case.oracle.chat_template is None  # the file has none ...
    assert config["chat_template"] == scalpel.default_chat_template("gemma3")  # ... so scalpel's default is used
    assert case.ours.vocab_size == 262144
    assert case.ours.encode("Hello world") == [2, 9259, 1902]
    assert scalpel.tokenizer_from_gguf(case.path).encode("Hello world") == [2, 9259, 1902]  # os.PathLike


def test_takes_a_gguffile_too(cases):
    case = cases["synthetic-llama"]
    f = scalpel.GGUFFile(str(case.path))
    assert scalpel.gguf_tokenizer_json(f) == scalpel.gguf_tokenizer_json(str(case.path))
    assert scalpel.gguf_tokenizer_config_json(f) == scalpel.gguf_tokenizer_config_json(str(case.path))
    assert scalpel.tokenizer_from_gguf(f).encode("abab a") == case.ours.encode("abab a")


def test_file_chat_template_is_used(cases):
    """A template in the file wins, and renders as transformers renders it."""
    case = cases["qwen2.5"]
    config = case.config
    assert config["chat_template"] == case.oracle.chat_template
    assert config["model_max_length"] == 32768
    for conv in CONVERSATIONS[:4]:
        for agp in (True, False):
            want = case.oracle.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp)
            assert case.ours.apply_chat_template(conv, add_generation_prompt=agp) == want


# ──────────────────────────── the built-in Gemma template ────────────────────────────

CONVERSATIONS = [
    [{"role": "user", "content": "Hello there!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "  and 3+3?  \n"}],
    [{"role": "system", "content": "  Keep spaces \n"}, {"role": "user", "content": "a"},
     {"role": "assistant", "content": " b "}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
    [{"role": "user", "content": "Unicode: café 日本 🙂 {{ not a tag }} <start_of_turn>"}],
    [{"role": "user", "content": ""}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "x"}],
    [{"role": "user", "content": [{"type": "text", "text": " parts "}, {"type": "text", "text": "two"}]}],
    [{"role": "system", "content": [{"type": "text", "text": "sys as parts"}]},
     {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    [{"role": "system", "content": "only a system prompt"}],
    [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}],
    [{"role": "user", "content": None}],
    # not alternating: both templates raise
    [{"role": "assistant", "content": "first"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}],
    [],
]


def _official_gemma_template(shared: Path) -> str:
    d = shared / "tokenizers" / "gemma-3-1b-it"
    if (d / "chat_template.jinja").is_file():
        return (d / "chat_template.jinja").read_text(encoding="utf-8")
    return json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"]


def test_default_gemma_template_renders_as_the_official_one(cases, shared):
    official = _official_gemma_template(shared)
    ours_source = scalpel.default_chat_template("gemma3")
    assert ours_source and ours_source != official
    assert scalpel.default_chat_template("gemma") == scalpel.default_chat_template("gemma2") == ours_source
    assert scalpel.default_chat_template("llama") is None
    hf = cases["gemma3-270m"].oracle
    ours = cases["gemma3-270m"].ours
    rendered = raised = 0
    for conv in CONVERSATIONS:
        for agp in (True, False):
            try:
                want = hf.apply_chat_template(conv, chat_template=official, tokenize=False, add_generation_prompt=agp)
            except Exception:
                with pytest.raises(Exception):
                    hf.apply_chat_template(conv, chat_template=ours_source, tokenize=False, add_generation_prompt=agp)
                with pytest.raises(ValueError):
                    ours.apply_chat_template(conv, add_generation_prompt=agp)
                raised += 1
                continue
            # transformers rendering scalpel's template, and scalpel rendering it.
            assert hf.apply_chat_template(conv, chat_template=ours_source, tokenize=False,
                                          add_generation_prompt=agp) == want, (conv, agp)
            assert ours.apply_chat_template(conv, add_generation_prompt=agp) == want, (conv, agp)
            rendered += 1
    assert rendered >= 20 and raised >= 8


def test_default_gemma_template_is_text_only(cases):
    ours = cases["gemma3-270m"].ours
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]}]
    with pytest.raises(ValueError, match="text-only"):
        ours.apply_chat_template(conv)


# ──────────────────────────────────── errors ─────────────────────────────────────


def test_errors(tmp_path):
    base = dict(types=[NORMAL] * 3, scores=[0.0, -1.0, -2.0])
    t5 = write_gguf(tmp_path / "t5.gguf", "t5", "t5", ["a", "b", "ab"], **base)
    with pytest.raises(scalpel.UnsupportedError, match=r"tokenizer\.ggml\.model.*\"llama\", \"gpt2\".*\"t5\""):
        scalpel.gguf_tokenizer_json(str(t5))
    short = write_gguf(tmp_path / "short.gguf", "llama", "llama", ["a", "b", "ab"], scores=[0.0, -1.0])
    with pytest.raises(scalpel.FormatError, match=r"tokenizer\.ggml\.scores.*3.*got 2 scores"):
        scalpel.tokenizer_from_gguf(str(short))
    no_merges = write_gguf(tmp_path / "nomerges.gguf", "gpt2", "gpt2", ["a", "b", "ab"])
    with pytest.raises(scalpel.FormatError, match=r"tokenizer\.ggml\.merges"):
        scalpel.gguf_tokenizer_json(str(no_merges))
    bad_merge = write_gguf(tmp_path / "badmerge.gguf", "gpt2", "gpt2", ["a", "b", "ab"], merges=["a c"])
    with pytest.raises(scalpel.FormatError, match=r"\"c\" is not in the vocabulary"):
        scalpel.gguf_tokenizer_json(str(bad_merge))
    bad_id = write_gguf(tmp_path / "badid.gguf", "llama", "llama", ["a", "b", "ab"], ids={"bos": 7}, **base)
    with pytest.raises(scalpel.FormatError, match=r"bos_token_id.*\[0, 3\).*7"):
        scalpel.gguf_tokenizer_config_json(str(bad_id))
    no_vocab = write_gguf(tmp_path / "novocab.gguf", "llama", "llama", ["a"])
    with pytest.raises(scalpel.FormatError, match=r"scores"):
        scalpel.gguf_tokenizer_json(str(no_vocab))
