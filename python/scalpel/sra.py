"""Directions, concept atoms and Surgical Refusal Ablation (docs/sra.md).

    reg = scalpel.sra.Registry.default()                        # shields + confounds
    cands = scalpel.sra.candidate_directions(model, harmful, harmless, fmt=fmt)
    sel = scalpel.sra.select_direction(model, cands, harmful_val, harmless_val, fmt=fmt)
    reg.extract(model, [sel.hook], [sel.position], fmt=fmt)
    res = scalpel.sra.surgical_direction(sel.direction, reg, sel.hook, sel.position)
    with scalpel.ablate_direction(model, res.clean): ...       # inference time
    scalpel.sra.export_ablated(source_dir, out_dir, res.clean)  # baked into the weights

The numerics (activations, ridge, projections, KL, perplexity) are C++; this
module holds the registry file format, the selection procedure, the
evaluation battery and hard-negative mining.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from . import _scalpel

__all__ = ["Atom", "Registry", "KINDS", "chat_formatter", "post_instruction_positions", "refusal_tokens",
           "Candidates", "candidate_directions", "Selection", "select_direction", "SRAResult", "surgical_direction",
           "evaluate", "mine_hard_negatives", "encode_prompts", "export_ablated", "shared_data_dir", "wikitext2", "gsm8k", "mbpp",
           "solution_perplexity"]

KINDS = ("target", "shield", "confound")
Formatter = Callable[[str], str]
_DEFAULT_REGISTRY = Path(__file__).with_name("atoms") / "default.json"


# ---------------------------------------------------------------- prompts ----

def chat_formatter(model) -> Formatter:
    """One user turn in the model's chat template (with the generation prompt), or the text
    itself when the tokenizer has no template."""
    tok = model.tokenizer

    def fmt(text: str) -> str:
        try:
            return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
        except Exception:  # no template
            return text

    fmt.templated = True  # its output carries the template's own BOS text
    return fmt


def post_instruction_positions(model, fmt: Formatter, probe: str = "Tell me a story about a dog.") -> list[int]:
    """The positions (negative, from the end) of the template's tokens after the instruction
    (Arditi et al.'s 'post-instruction' tokens), at least [-1]."""
    full = fmt(probe)
    cut = full.rindex(probe) + len(probe)
    n = len(_ids(model, full, fmt)) - len(_ids(model, full[:cut], fmt))
    return list(range(-max(n, 1), 0))


def refusal_tokens(model, fmt: Formatter, phrases: Sequence[str] = ("I cannot", "I can't", "I'm sorry", "I am sorry",
                                                                   "As an AI", "Sorry")) -> list[int]:
    """The first token of each refusal phrase as the model would write it after a prompt."""
    out = []
    prompt = _ids(model, fmt("Hello."), fmt)
    for p in phrases:
        b = _ids(model, fmt("Hello.") + p, fmt)
        c = next((i for i, (x, y) in enumerate(zip(prompt, b)) if x != y), min(len(prompt), len(b)))
        if c < len(b):  # the first token where the phrase begins (it may merge with the template's end)
            out.append(b[c])
    return sorted(set(out))


def _ids(model, text: str, fmt: Formatter) -> list[int]:
    """The ids of a text `fmt` produced: with the tokenizer's special tokens (BOS), unless `fmt` is a
    chat template, whose output carries its own."""
    return model.tokenizer.encode(text, add_special_tokens=not getattr(fmt, "templated", False))


def encode_prompts(model, prompts: Iterable[str], fmt: Formatter) -> list[list[int]]:
    """Each prompt formatted by `fmt` and encoded as the model will see it."""
    return [_ids(model, fmt(p), fmt) for p in prompts]


def _complete(model, ids: list[list[int]], max_new_tokens: int) -> list[str]:
    res = model.generate(ids, max_new_tokens=max_new_tokens, return_result=True)
    return [model.tokenizer.decode(t, skip_special_tokens=True) for t in res.new_tokens]


# ---------------------------------------------------------------- atoms ------

def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass
class Atom:
    """A named concept: a positive and a negative prompt set that differ only in it."""
    name: str
    kind: str
    positive: list[str]
    negative: list[str]
    description: str = ""
    hooks: list[str] | None = None  # where it is read (None: wherever the target direction is)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"atom {self.name!r}: kind expected one of {KINDS}, got {self.kind!r}")
        if not self.positive or not self.negative:
            raise ValueError(f"atom {self.name!r}: expected nonempty positive and negative prompt sets, got "
                             f"{len(self.positive)} and {len(self.negative)}")

    @staticmethod
    def from_dict(d: dict, base: Path | None = None) -> "Atom":
        missing = [k for k in ("name", "kind", "positive", "negative") if k not in d]
        if missing:
            raise ValueError(f"atom entry {d.get('name', '?')!r}: missing {missing} (expected name, kind, positive, "
                             f"negative; optional description, hooks, fill)")
        fill = d.get("fill")

        def prompts(spec) -> list[str]:
            if isinstance(spec, dict):  # {"file": path, "field": key, "limit": n}
                p = Path(spec["file"])
                p = p if p.is_absolute() or base is None else base / p
                if not p.exists():
                    raise FileNotFoundError(f"atom {d['name']!r}: prompt file {p} not found")
                text = p.read_text()
                rows = json.loads(text) if p.suffix == ".json" else [json.loads(x) for x in text.splitlines() if x]
                vals = [r[spec["field"]] if "field" in spec else r for r in rows]
                return [str(v) for v in vals[: spec.get("limit", len(vals))]]
            out = list(spec)
            if fill:
                out = [t.format(x=x) for x in fill for t in out]
            return out

        return Atom(d["name"], d["kind"], prompts(d["positive"]), prompts(d["negative"]), d.get("description", ""),
                    d.get("hooks"))

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "description": self.description, "positive": self.positive,
             "negative": self.negative}
        if self.hooks:
            d["hooks"] = self.hooks
        return d


def _key(atom: str, hook: str, position: int) -> str:
    return f"{atom}|{hook}|{position}"


class Registry:
    """Concept atoms and their extracted directions. On disk: NAME.json (the atoms) and
    NAME.safetensors beside it (directions keyed 'atom|hook|position')."""

    def __init__(self, atoms: Sequence[Atom] = (), directions: dict[str, torch.Tensor] | None = None):
        self.atoms: dict[str, Atom] = {}
        for a in atoms:
            self.add(a)
        self.directions: dict[str, torch.Tensor] = dict(directions or {})

    def add(self, atom: Atom) -> None:
        if atom.name in self.atoms:
            raise ValueError(f"registry: atom {atom.name!r} is already registered")
        self.atoms[atom.name] = atom

    def names(self, kinds: Sequence[str] = KINDS) -> list[str]:
        return [n for n, a in self.atoms.items() if a.kind in kinds]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Registry":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"atom registry {path} not found (expected a scalpel.atoms/1 JSON file)")
        d = json.loads(path.read_text())
        if d.get("format") != "scalpel.atoms/1":
            raise ValueError(f"{path}: expected format 'scalpel.atoms/1', got {d.get('format')!r}")
        reg = cls([Atom.from_dict(a, path.parent) for a in d.get("atoms", [])])
        st = path.with_suffix(".safetensors")
        if st.exists():
            reg.directions = {k: v.clone() for k, v in _scalpel.load_safetensors(str(st)).items()}
        return reg

    @classmethod
    def default(cls) -> "Registry":
        """The shipped registry: shields math, coding, logic, factual, story; confounds imperative,
        formal, long, polite, list_format."""
        return cls.load(_DEFAULT_REGISTRY)

    def save(self, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
        """Writes NAME.json and (when there are directions) NAME.safetensors, each atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(path, {"format": "scalpel.atoms/1", "atoms": [a.to_dict() for a in self.atoms.values()]})
        if self.directions:
            _scalpel.save_safetensors(str(path.with_suffix(".safetensors")),
                                      {k: v.contiguous() for k, v in self.directions.items()}, metadata or {})
        return path

    def extract(self, model, hooks: Sequence[str], positions: Sequence[int], fmt: Formatter | None = None,
                names: Sequence[str] | None = None, method: str = "mean", batch_size: int = 32) -> None:
        """Each atom's direction (mean difference, or the first principal component with
        method='pca') at every hook and position, stored in self.directions."""
        fmt = fmt or chat_formatter(model)
        for n in names or list(self.atoms):
            a = self.atoms[n]
            pos = _scalpel.collect_activations(model, encode_prompts(model, a.positive, fmt), list(hooks), list(positions),
                                               batch_size)
            neg = _scalpel.collect_activations(model, encode_prompts(model, a.negative, fmt), list(hooks), list(positions),
                                               batch_size)
            d = _scalpel.mean_difference(pos, neg) if method == "mean" else _scalpel.pca_directions(pos, neg, 1)[0]
            for i, h in enumerate(hooks):
                for j, p in enumerate(positions):
                    self.directions[_key(n, h, p)] = d[i, j].contiguous()

    def direction(self, atom: str, hook: str, position: int) -> torch.Tensor:
        k = _key(atom, hook, position)
        if k not in self.directions:
            raise KeyError(f"no direction for atom {atom!r} at {hook} position {position}: run "
                           f"registry.extract(model, [{hook!r}], [{position}]) first")
        return self.directions[k]

    def matrix(self, hook: str, position: int, kinds: Sequence[str] = ("shield", "confound"),
               exclude: Sequence[str] = ()) -> tuple[list[str], torch.Tensor]:
        names = [n for n in self.names(kinds) if n not in exclude]
        if not names:
            raise ValueError(f"registry: no atoms of kinds {list(kinds)} (excluding {list(exclude)})")
        return names, torch.stack([self.direction(n, hook, position) for n in names])

    def audit(self, hook: str, position: int, kinds: Sequence[str] = ("shield", "confound"),
              collinear_cosine: float = 0.9) -> dict:
        """Pairwise cosines, condition number and near-collinear pairs of the atoms at one site."""
        names, m = self.matrix(hook, position, kinds)
        a = _scalpel.audit_directions(m, collinear_cosine)
        return {"atoms": names, "cosines": a.cosines.tolist(), "condition_number": a.condition_number,
                "collinear": [[names[i], names[j]] for i, j in a.collinear]}


# ---------------------------------------------------------- directions -------

@dataclass
class Candidates:
    """Mean-difference (or PCA) directions per hook and position: directions[h, p] is [d]."""
    hooks: list[str]
    positions: list[int]
    directions: torch.Tensor  # [hooks, positions, d]


def _layer_of(hook: str) -> int:
    return int(hook.split(".")[1]) if hook.startswith("blocks.") else 0


def candidate_directions(model, harmful: Sequence[str], harmless: Sequence[str], fmt: Formatter | None = None,
                         hooks: Sequence[str] | None = None, positions: Sequence[int] | None = None,
                         method: str = "mean", batch_size: int = 32) -> Candidates:
    """Directions between two prompt sets at every layer's resid_pre and resid_mid (default) and
    every post-instruction position (default)."""
    fmt = fmt or chat_formatter(model)
    L = model.config.n_layers
    hooks = list(hooks or [f"blocks.{l}.hook_{c}" for l in range(L) for c in ("resid_pre", "resid_mid")])
    positions = list(positions or post_instruction_positions(model, fmt))
    a = _scalpel.collect_activations(model, encode_prompts(model, harmful, fmt), hooks, positions, batch_size)
    b = _scalpel.collect_activations(model, encode_prompts(model, harmless, fmt), hooks, positions, batch_size)
    if method == "mean":
        d = _scalpel.mean_difference(a, b)
    elif method == "pca":
        d = _scalpel.pca_directions(a, b, 1)[0] * _scalpel.mean_difference(a, b).norm(dim=-1, keepdim=True)
    else:
        raise ValueError(f"candidate_directions method: expected 'mean' or 'pca', got {method!r}")
    return Candidates(hooks, positions, d)


@dataclass
class Selection:
    hook: str
    position: int
    direction: torch.Tensor
    rows: list[dict] = field(default_factory=list)  # every candidate's scores

    def to_dict(self) -> dict:
        return {"hook": self.hook, "position": self.position, "candidates": self.rows}


def _refusal_score(logits: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
    return _scalpel.refusal_score(logits.unsqueeze(1), list(tokens), -1)


def select_direction(model, cands: Candidates, harmful_val: Sequence[str], harmless_val: Sequence[str],
                     fmt: Formatter | None = None, tokens: Sequence[int] | None = None, kl_threshold: float = 0.1,
                     exclude_last: float = 0.2, progress: bool = True) -> Selection:
    """Arditi et al.'s selection: for each candidate, the mean refusal score on harmful prompts
    with the direction ablated (bypass; lower is better), on harmless prompts with it added at its
    layer (induce; must be > 0), and the first-token KL on harmless prompts under ablation (must be
    < kl_threshold); candidates in the last `exclude_last` fraction of layers are excluded. The
    eligible candidate with the lowest bypass score wins; every candidate's scores are kept."""
    fmt = fmt or chat_formatter(model)
    tokens = list(tokens or refusal_tokens(model, fmt))
    H, B = encode_prompts(model, harmful_val, fmt), encode_prompts(model, harmless_val, fmt)
    ref_b = _scalpel.last_logits(model, B)
    base_h = _refusal_score(_scalpel.last_logits(model, H), tokens).mean().item()
    L = model.config.n_layers
    rows, best = [], None
    total = len(cands.hooks) * len(cands.positions)
    with _scalpel.Progress("selecting a direction", total) if progress else contextlib.nullcontext() as bar:
        for i, h in enumerate(cands.hooks):
            layer = _layer_of(h)
            for j, p in enumerate(cands.positions):
                v = cands.directions[i, j]
                row = {"hook": h, "layer": layer, "position": p, "norm": v.norm().item()}
                if row["norm"] < 1e-8:
                    rows.append({**row, "eligible": False, "reason": "zero direction"})
                    if bar is not None:
                        bar.update()
                    continue
                with _scalpel.ablate_direction(model, v):
                    row["bypass"] = _refusal_score(_scalpel.last_logits(model, H), tokens).mean().item()
                    row["kl"] = _scalpel.first_token_kl(model, B, ref_b).mean().item()
                with _scalpel.add_direction(model, v, 1.0, layer, [], False):
                    row["induce"] = _refusal_score(_scalpel.last_logits(model, B), tokens).mean().item()
                reasons = []
                if layer >= L * (1 - exclude_last):
                    reasons.append(f"layer {layer} in the last {exclude_last:.0%} of layers")
                if row["kl"] >= kl_threshold:
                    reasons.append(f"KL {row['kl']:.3g} ≥ {kl_threshold}")
                if row["induce"] <= 0:
                    reasons.append(f"induce score {row['induce']:.3g} ≤ 0")
                row["eligible"] = not reasons
                row["reason"] = "; ".join(reasons)
                rows.append(row)
                if row["eligible"] and (best is None or row["bypass"] < best[0]):
                    best = (row["bypass"], h, p, v)
                if bar is not None:
                    bar.update()
    for r in rows:
        r["baseline"] = base_h
    if best is None:
        worst = "; ".join(f"{r['hook']}@{r['position']}: {r['reason']}" for r in rows[:6])
        raise RuntimeError(f"select_direction: no candidate passed the filters (KL < {kl_threshold}, induce > 0, not in "
                           f"the last {exclude_last:.0%} of layers), e.g. {worst}; relax kl_threshold / exclude_last")
    return Selection(best[1], best[2], best[3], rows)


@dataclass
class SRAResult:
    dirty: torch.Tensor
    clean: torch.Tensor
    atoms: list[str]
    ridge: dict
    hook: str
    position: int
    audit: dict

    def to_dict(self) -> dict:
        return {"hook": self.hook, "position": self.position, "atoms": self.atoms,
                "coefficients": dict(zip(self.atoms, self.ridge["coefficients"])),
                **{k: v for k, v in self.ridge.items() if k != "coefficients"}, "audit": self.audit,
                "dirty_norm": self.dirty.norm().item(), "clean_norm": self.clean.norm().item()}


def surgical_direction(dirty: torch.Tensor, registry: Registry, hook: str, position: int, lambda_: float = -1.0,
                       kinds: Sequence[str] = ("shield", "confound"), exclude: Sequence[str] = ()) -> SRAResult:
    """Surgical Refusal Ablation's direction: the dirty direction minus what the shield and
    confound atoms at the same site predict by ridge regression (λ by GCV when lambda_ < 0)."""
    names, A = registry.matrix(hook, position, kinds, exclude)
    r = _scalpel.ridge_residualize(dirty, A, lambda_)
    audit = _scalpel.audit_directions(A)
    return SRAResult(dirty, r.clean.to(torch.float32), names, r.to_dict(), hook, position,
                     {"cosines": audit.cosines.tolist(), "condition_number": audit.condition_number,
                      "collinear": [[names[i], names[j]] for i, j in audit.collinear]})


# ---------------------------------------------------------- evaluation -------

def shared_data_dir() -> Path | None:
    """$SCALPEL_DATA, else the data/ folder of ../shared (mainjob.shared_dir: $SCALPEL_SHARED or
    beside the repository), when present."""
    from .mainjob import shared_dir

    if os.environ.get("SCALPEL_DATA") and Path(os.environ["SCALPEL_DATA"]).is_dir():
        return Path(os.environ["SCALPEL_DATA"])
    shared = shared_dir()
    return shared / "data" if shared is not None and (shared / "data").is_dir() else None


def _data_file(*parts: str) -> Path:
    d = shared_data_dir()
    if d is None or not (d.joinpath(*parts)).exists():
        raise FileNotFoundError(f"{'/'.join(parts)} not found: set SCALPEL_DATA to a directory holding the evaluation "
                                f"sets (../shared/data layout; see its SOURCES.md)")
    return d.joinpath(*parts)


def wikitext2(tokenizer, n: int = 32, seq_len: int = 128) -> list[list[int]]:
    """n consecutive windows of seq_len tokens from the WikiText-2 (raw) test split."""
    text = _data_file("wikitext-2-raw", "wiki.test.raw").read_text()
    ids = tokenizer.encode(text[: n * seq_len * 8])
    bos = ids[:1] if ids and tokenizer.encode("")[:1] == ids[:1] else []
    body = ids[len(bos):]
    out = [bos + body[i * seq_len:(i + 1) * seq_len] for i in range(n) if (i + 1) * seq_len <= len(body)]
    if not out:
        raise ValueError("wikitext2: the text is shorter than one window")
    return out


def gsm8k(n: int = 32) -> list[tuple[str, str]]:
    """(question, reference solution) pairs from GSM8K test."""
    rows = [json.loads(x) for x in _data_file("gsm8k", "test.jsonl").read_text().splitlines()[:n]]
    return [(r["question"], r["answer"]) for r in rows]


def mbpp(n: int = 32) -> list[tuple[str, str]]:
    """(task, reference code) pairs from MBPP."""
    rows = [json.loads(x) for x in _data_file("mbpp", "mbpp.jsonl").read_text().splitlines()[:n]]
    return [(r["text"], r["code"]) for r in rows]


def solution_perplexity(model, pairs: Sequence[tuple[str, str]], fmt: Formatter | None = None,
                        max_tokens: int = 256) -> float:
    """Perplexity of the reference solutions given their prompts (prompt tokens are not scored)."""
    fmt = fmt or (lambda s: s)
    nll, count = 0.0, 0
    for q, a in pairs:
        p = _ids(model, fmt(q), fmt)
        full = _ids(model, fmt(q) + a, fmt)[:max_tokens]
        if len(full) <= len(p):
            continue
        mask = [0] * len(p) + [1] * (len(full) - len(p))
        batch = _scalpel.make_lm_batch([_scalpel.LMExample(full, mask)])
        k = int(batch.loss_mask.sum())
        nll += _scalpel.lm_loss(model, batch).item() * k
        count += k
    return math.exp(nll / max(count, 1))


def evaluate(model, harmful: Sequence[str], harmless: Sequence[str], fmt: Formatter | None = None,
             reference_logits: torch.Tensor | None = None, tokens: Sequence[int] | None = None,
             texts: Sequence[Sequence[int]] | None = None, solutions: dict[str, Sequence[tuple[str, str]]] | None = None,
             max_new_tokens: int = 24, judge: Callable[[str], bool] | None = None) -> dict:
    """The evaluation battery under whatever edit is active: refusal rate of greedy completions on
    `harmful` (substring judge, or `judge`), over-refusal on `harmless`, mean logit refusal score,
    first-token KL on `harmless` against `reference_logits`, perplexity of `texts` (e.g. WikiText-2
    windows) and of each set of reference `solutions` (e.g. GSM8K, MBPP)."""
    fmt = fmt or chat_formatter(model)
    tokens = list(tokens or refusal_tokens(model, fmt))
    judge = judge or (lambda s: _scalpel.is_refusal(s))
    out = {}
    H, B = encode_prompts(model, harmful, fmt), encode_prompts(model, harmless, fmt)
    gen_h, gen_b = _complete(model, H, max_new_tokens), _complete(model, B, max_new_tokens)
    out["refusal_rate"] = sum(map(judge, gen_h)) / len(gen_h)
    out["over_refusal"] = sum(map(judge, gen_b)) / len(gen_b)
    out["refusal_score"] = _refusal_score(_scalpel.last_logits(model, H), tokens).mean().item()
    if reference_logits is not None:
        out["first_token_kl"] = _scalpel.first_token_kl(model, B, reference_logits).mean().item()
    if texts:
        out["perplexity"] = _scalpel.perplexity(model, [list(t) for t in texts])
    for name, pairs in (solutions or {}).items():
        out[f"{name}_perplexity"] = solution_perplexity(model, pairs)
    out["examples"] = {"harmful": list(zip(harmful[:3], gen_h[:3])), "harmless": list(zip(harmless[:3], gen_b[:3]))}
    return out


# ------------------------------------------------------ mining, export -------

def mine_hard_negatives(model, make_direction: Callable[[list[str], list[str]], torch.Tensor],
                        harmful: Sequence[str], harmless: Sequence[str], harmful_pool: Sequence[str],
                        harmless_pool: Sequence[str], fmt: Formatter | None = None, rounds: int = 3,
                        target_refusal: float = 0.02, top_kl: int = 4, gamma: float = 1.0,
                        max_new_tokens: int = 16, judge: Callable[[str], bool] | None = None,
                        log: Callable[[str], None] = print) -> tuple[torch.Tensor, list[dict]]:
    """Iterates: direction from the current sets; ablate it; harmful prompts of the pool still
    refused and the `top_kl` harmless prompts of the pool whose first-token KL is highest join
    the sets. Stops when the pool's refusal rate ≤ target_refusal, nothing new is found, or after
    `rounds`. Returns the last direction and one log row per round."""
    fmt = fmt or chat_formatter(model)
    judge = judge or (lambda s: _scalpel.is_refusal(s))
    harmful, harmless = list(harmful), list(harmless)
    HP, BP = encode_prompts(model, harmful_pool, fmt), encode_prompts(model, harmless_pool, fmt)
    ref = _scalpel.last_logits(model, BP)
    history = []
    v = None
    for r in range(rounds):
        v = make_direction(harmful, harmless)
        with _scalpel.ablate_direction(model, v, gamma):
            gen = _complete(model, HP, max_new_tokens)
            kl = _scalpel.first_token_kl(model, BP, ref)
        refused = [p for p, g in zip(harmful_pool, gen) if judge(g)]
        new_h = [p for p in refused if p not in harmful]
        order = torch.argsort(kl, descending=True).tolist()
        new_b = [harmless_pool[i] for i in order if harmless_pool[i] not in harmless][:top_kl]
        row = {"round": r, "refusal_rate": len(refused) / max(len(HP), 1), "mean_kl": kl.mean().item(),
               "max_kl": kl.max().item(), "harmful_set": len(harmful), "harmless_set": len(harmless),
               "added_harmful": new_h, "added_harmless": new_b}
        history.append(row)
        log(f"mining round {r}: pool refusal {row['refusal_rate']:.1%}, mean KL {row['mean_kl']:.4f}, "
            f"+{len(new_h)} harmful, +{len(new_b)} harmless")
        if row["refusal_rate"] <= target_refusal or (not new_h and not new_b):
            break
        harmful += new_h
        harmless += new_b
    return v, history


def export_ablated(source: str | os.PathLike, out: str | os.PathLike, direction: torch.Tensor, gamma: float = 1.0,
                   overwrite: bool = False, from_layer: int = 0) -> Path:
    """A Hugging Face directory whose weights have `direction` projected out (W ← (I − γv̂v̂ᵀ)W for
    every write into the residual stream, or of blocks from_layer.. only); the source directory is
    only read. A tied model is untied when its embedding is edited (the export gets its own lm_head). The direction and
    γ are recorded beside the weights in scalpel_edit.json (not a .safetensors file, which
    loaders would take for a weight shard)."""
    from .model import load

    model = load(str(source), dtype="float32")
    if from_layer == 0:
        model.untie_embeddings()  # the embedding is edited; a tied unembedding must not be
    edited = _scalpel.orthogonalize_weights(model, direction, gamma, from_layer)
    model.save_pretrained(str(out), "", overwrite)
    _write_json_atomic(Path(out) / "scalpel_edit.json",
                       {"edit": "directional ablation (weight orthogonalization)", "gamma": gamma,
                        "from_layer": from_layer, "source": str(source), "edited": edited,
                        "direction": direction.double().tolist()})
    return Path(out)
