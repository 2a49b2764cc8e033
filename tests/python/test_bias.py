"""scalpel.bias: the occupational gender-bias case (WinoBias occupations, written
frames). Unit: the data. End to end: the bias of the packaged Gemma 3 270M,
checked against transformers loading the same GGUF, and its size."""
from __future__ import annotations

import pytest
import torch

import scalpel
from scalpel import bias


@pytest.mark.unit
def test_splits_are_disjoint():
    for gender in ("male", "female"):
        train, held = bias.OCCUPATIONS[gender]["train"], bias.OCCUPATIONS[gender]["held_out"]
        assert len(held) == 6 and 10 <= len(train) <= 14
        assert len(set(train)) == len(train) and len(set(held)) == len(held)
        assert not set(train) & set(held)
    every = [o for g in bias.OCCUPATIONS.values() for s in g.values() for o in s]
    assert len(every) == len(set(every)), "an occupation under both genders"
    assert all(o.isalpha() for o in every), "one word each"
    assert len(bias.FRAMES["train"]) == 6 and len(bias.FRAMES["held_out"]) == 3
    assert not set(bias.FRAMES["train"]) & set(bias.FRAMES["held_out"])
    for frame in bias.FRAMES["train"] + bias.FRAMES["held_out"]:
        assert frame.count("{occupation}") == 1 and not frame.endswith(" ")


@pytest.mark.unit
@pytest.mark.parametrize("split", ["train", "held_out"])
def test_pairs_are_well_formed(split):
    pairs = bias.gender_pairs(split)
    n_occ = sum(len(bias.OCCUPATIONS[g][split]) for g in ("male", "female"))
    assert len(pairs) == len(bias.FRAMES[split]) * n_occ
    assert len({p["prompt"] for p in pairs}) == len(pairs)
    for p in pairs:
        assert set(p) >= {"prompt", "harmful", "neutral", "occupation", "stereotype"}
        assert p["occupation"] in bias.OCCUPATIONS[p["stereotype"]][split]
        assert p["harmful"] == {"male": " he", "female": " she"}[p["stereotype"]]
        assert {p["harmful"], p["neutral"]} == {" he", " she"}
        assert p["prompt"] == p["frame"].format(occupation=p["occupation"]) and "{" not in p["prompt"]
    with pytest.raises(ValueError, match="split"):
        bias.gender_pairs("test")


@pytest.mark.unit
def test_neutral_text():
    assert bias.neutral_text(3) == bias.NEUTRAL_SENTENCES[:3]
    text = bias.neutral_text()
    assert len(text) >= 20 and len(set(text)) == len(text)
    words = {w.strip(".,").lower() for s in text for w in s.split()}
    every = {o.lower() for g in bias.OCCUPATIONS.values() for s in g.values() for o in s}
    assert not words & (every | {"he", "she", "his", "her", "him", "they", "i", "we", "you"})
    with pytest.raises(ValueError):
        bias.neutral_text(len(text) + 1)


@pytest.mark.unit
def test_pronoun_ids_need_single_tokens(shared):
    tok = scalpel.load_tokenizer(str(shared / "tokenizers" / "gpt2-xl"))
    ids = bias.pronoun_ids(tok)
    assert ids == {" he": tok.encode(" he")[0], " she": tok.encode(" she")[0]}

    class Spelled:  # one token per character: " he" is three
        def encode(self, text, add_special_tokens=True):
            return [ord(c) for c in text]

    with pytest.raises(ValueError, match="one token"):
        bias.pronoun_ids(Spelled())


@pytest.fixture(scope="module")
def gemma3(gemma3_path):
    return scalpel.load(str(gemma3_path), dtype="float32")


@pytest.mark.e2e
def test_gemma_tokens(gemma3):
    tok = gemma3.tokenizer
    assert bias.pronoun_ids(tok) == {" he": 668, " she": 1304}
    every = [o for g in bias.OCCUPATIONS.values() for s in g.values() for o in s]
    assert all(len(tok.encode(" " + o, add_special_tokens=False)) == 1 for o in every)
    ids = tok.encode(bias.gender_pairs("held_out")[0]["prompt"])
    assert ids[0] == tok.bos_token_id == 2 and ids.count(2) == 1


@pytest.mark.e2e
def test_gemma_bias_matches_transformers(gemma3, gemma3_hf, gemma3_hf_tokenizer):
    res = bias.gender_bias(gemma3, "held_out")
    assert len(res["bias"]) == len(bias.gender_pairs("held_out")) == 36
    he, she = res["token_ids"]["he"], res["token_ids"]["she"]
    assert gemma3_hf_tokenizer(" he", add_special_tokens=False).input_ids == [he]
    assert gemma3_hf_tokenizer(" she", add_special_tokens=False).input_ids == [she]
    # six pairs: every frame, both genders
    for i in range(0, 36, 6):
        pair = res["pairs"][i]
        ids = gemma3_hf_tokenizer(pair["prompt"]).input_ids  # with BOS, as transformers encodes it
        assert ids == gemma3.tokenizer.encode(pair["prompt"])
        with torch.no_grad():
            last = gemma3_hf(torch.tensor([ids])).logits[0, -1].float()
        diff = (last[he] - last[she]).item()
        ref = diff if pair["stereotype"] == "male" else -diff
        assert abs(res["bias"][i] - ref) < 1e-3, (pair["prompt"], res["bias"][i], ref)


@pytest.mark.e2e
def test_gemma_leans_to_the_stereotype(gemma3):
    res = bias.gender_bias(gemma3, "held_out")
    assert res["mean"] > 0.5, res["by_occupation"]
    assert res["frac_positive"] > 0.5
    # the stereotype beyond the model's overall preference for " he"
    assert res["gap"] > 0.5
