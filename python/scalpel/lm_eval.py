"""scalpel inside EleutherAI's lm-evaluation-harness.

``ScalpelLM`` is an ``lm_eval.api.model.LM`` registered as model ``"scalpel"``:
its three request types run on scalpel's log-likelihood engine
(``scalpel.loglikelihood`` / ``loglikelihood_rolling`` / ``generate_until``),
with whatever hooks or interventions are attached to the model::

    import lm_eval, scalpel
    from scalpel.lm_eval import ScalpelLM, task_manager
    lm = ScalpelLM(pretrained="gemma3-270m", batch_size=16)      # or ScalpelLM(model=an edited model)
    out = lm_eval.simple_evaluate(model=lm, tasks=["scalpel_hellaswag"], limit=50,
                                  task_manager=task_manager("../shared/data"))

The offline ``scalpel_*`` tasks live in ``scalpel/tasks`` (``task_manager``
adds them). lm-eval is an optional dependency (``pip install scalpel[eval]``);
``import scalpel`` does not import it.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - exercised only without lm-eval
    raise ImportError(
        "scalpel.lm_eval needs lm-evaluation-harness: pip install 'lm-eval==0.4.13' (or scalpel[eval])") from e

from . import _scalpel
from .model import load

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def task_manager(data_dir: str | os.PathLike | None = None, **kwargs: Any):
    """An lm_eval TaskManager that knows the ``scalpel_*`` tasks. ``data_dir``
    (else ``$SCALPEL_DATA``) is the folder holding the data sets (the layout of
    ``../shared/data``: ``hellaswag/``, ``mmlu/``, ...)."""
    from lm_eval.tasks import TaskManager

    _set_data_dir(data_dir)
    return TaskManager(include_path=str(TASKS_DIR), **kwargs)


def _set_data_dir(data_dir: str | os.PathLike | None) -> None:
    """SCALPEL_DATA for the task readers: data_dir when given, else as it is, else ../shared/data beside
    the repository when that exists (scalpel.mainjob.shared_dir)."""
    if data_dir is None and not os.environ.get("SCALPEL_DATA"):
        from .mainjob import shared_dir

        candidate = shared_dir() / "data"
        if candidate.is_dir():
            data_dir = candidate
    if data_dir is not None:
        os.environ["SCALPEL_DATA"] = str(Path(data_dir).resolve())


def _batch_size(value: Any) -> int:
    if value is None or value == "auto" or (isinstance(value, str) and value.startswith("auto")):
        return 16
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch_size: expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {n}")
    return n


@register_model("scalpel")
class ScalpelLM(LM):
    """lm-eval's model interface on scalpel's engine.

    pretrained: a packaged model name ("gemma3-270m"), a GGUF file or a Hugging
    Face directory; or model: an already-loaded (possibly intervened)
    scalpel Transformer. batch_size: rows per forward pass ("auto" means 16); max_batch_tokens: at most
    this many context tokens per pass (fewer rows of long contexts run faster on CPU).
    max_length: the longest input (0: the model's). share_context: run each
    distinct context once (False: whole sequences, for hooks that must see
    them). progress: scalpel's own progress lines.
    """

    def __init__(self, pretrained: str | None = None, model: Any = None, dtype: str = "float32",
                 batch_size: Any = 16, max_batch_tokens: int = 4096, max_length: int = 0, share_context: bool = True,
                 progress: bool = True, **kwargs: Any) -> None:
        super().__init__()
        if (pretrained is None) == (model is None):
            raise ValueError("ScalpelLM: pass exactly one of pretrained= (a name, GGUF file or HF directory) "
                             "and model= (a loaded scalpel model)")
        unknown = set(kwargs) - {"device", "max_batch_size", "trust_remote_code"}
        if unknown:
            raise TypeError(f"ScalpelLM: unknown arguments {sorted(unknown)}")
        if kwargs.get("device") not in (None, "cpu"):
            # lm-eval's command line passes its default "cuda:0" whatever the machine has.
            import warnings

            warnings.warn(f"ScalpelLM: device {kwargs['device']!r} ignored; the model runs on cpu", stacklevel=2)
        self.model = model if model is not None else load(pretrained, dtype=dtype)
        # What lm-eval's request cache keys on: the checkpoint, or this model object.
        self._name = f"scalpel:{pretrained}" if pretrained is not None else f"scalpel:model-{id(model):x}"
        self.tokenizer = self.model.tokenizer
        if isinstance(share_context, str):
            share_context = share_context.lower() not in ("0", "false", "no")
        if isinstance(progress, str):
            progress = progress.lower() not in ("0", "false", "no")
        self.options = _scalpel.LoglikelihoodOptions(batch_size=_batch_size(batch_size),
                                                     max_batch_tokens=int(max_batch_tokens), max_length=int(max_length),
                                                     share_context=bool(share_context), progress=bool(progress))

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "ScalpelLM":
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> "ScalpelLM":
        # lm-eval's own settings (--batch_size, --device) fill in what the model arguments leave out.
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    # lm-eval's request types ------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [tuple(r.args) for r in requests]
        out = _scalpel.loglikelihood(self.model, pairs, self.options, self.tokenizer)
        return [(r.logprob, r.is_greedy) for r in out]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        return list(_scalpel.loglikelihood_rolling(self.model, texts, self.options, self.tokenizer))

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        # Requests with the same generation settings run together; greedy only.
        groups: dict[tuple, list[int]] = defaultdict(list)
        settings: dict[tuple, tuple[list[str], int]] = {}
        for i, r in enumerate(requests):
            context, gen_kwargs = r.args
            kw = dict(gen_kwargs or {})
            until = kw.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            # lm-eval's precedence of the length aliases; None means the default.
            max_gen = None
            for alias in ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens"):
                value = kw.pop(alias, None)
                if max_gen is None and value is not None:
                    max_gen = value
            max_gen = 256 if max_gen is None else max_gen
            temperature = kw.pop("temperature", None)
            do_sample = kw.pop("do_sample", None)
            # As lm-eval normalizes them: do_sample=False is greedy whatever the temperature; without
            # do_sample, a positive temperature means sampling.
            sampling = bool(do_sample) if do_sample is not None else bool(temperature)
            if sampling:
                raise NotImplementedError(
                    f"ScalpelLM.generate_until: greedy decoding only (do_sample=False or temperature=0); "
                    f"the task asks for do_sample={do_sample}, temperature={temperature}")
            kw.pop("top_p", None), kw.pop("top_k", None)
            if kw:
                raise NotImplementedError(f"ScalpelLM.generate_until: unsupported generation settings {sorted(kw)}")
            key = (tuple(until), int(max_gen))
            settings[key] = (until, int(max_gen))
            groups[key].append(i)
        out = [""] * len(requests)
        for key, idx in groups.items():
            until, max_gen = settings[key]
            opts = _scalpel.GenerateUntilOptions(until=until, max_gen_toks=max_gen,
                                                 batch_size=self.options.batch_size,
                                                 max_length=self.options.max_length,
                                                 progress=self.options.progress)
            texts = _scalpel.generate_until(self.model, [requests[i].args[0] for i in idx], opts, self.tokenizer)
            for i, t in zip(idx, texts):
                out[i] = t
        return out

    # What lm-eval reads for chat templates and few-shot formatting.
    @property
    def tokenizer_name(self) -> str:
        return self._name

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(list(chat_history), add_generation_prompt)


def cli(argv: list[str] | None = None) -> int:
    """lm-eval's command line with model "scalpel" registered and the
    scalpel_* tasks on its include path (`scalpel lm-eval --model scalpel
    --model_args pretrained=gemma3-270m --tasks scalpel_hellaswag ...`)."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    args = list(sys.argv[1:] if argv is None else argv)
    _set_data_dir(None)
    if "--include_path" not in args:
        args += ["--include_path", str(TASKS_DIR)]
    saved = sys.argv
    sys.argv = ["lm-eval"] + args
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0
