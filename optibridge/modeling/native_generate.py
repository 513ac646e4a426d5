"""Native decode loops (openvino-genai, onnxruntime-genai) behind ``OBModelForCausalLM.generate()``.

transformers' ``generate`` pays Python per token (logits processors, cache hand-over, numpy↔torch
copies) on top of the runtime. A backend session may offer ``native_decoder(layout)``: a decoder
that runs the whole greedy loop inside the runtime. It is used only for what it reproduces
exactly: batch 1, an all-ones attention mask, greedy search, the token limits and end-of-sequence
ids, nothing else. Any other setting (sampling, beams, penalties, processors, streamers, scores)
goes through transformers, and the reason is kept on the model (``generation_fallback_reason``).

``generation_engine`` chooses: ``"auto"`` (the native loop where it applies, else transformers),
``"native"`` (the same, but an inapplicable call is an error instead of a fallback) or
``"transformers"`` (never native). ``last_generation_engine`` names what the latest call used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from ..errors import ArtifactError, InputError, OptibridgeError

ENGINES = ("auto", "native", "transformers")
TRANSFORMERS_ENGINE = "transformers"
# generate() keyword arguments that only carry what the native loop does itself.
PLAIN_KWARGS = frozenset({"input_ids", "attention_mask", "generation_config", "use_cache"})
# GenerationConfig fields the native loop honours; any other field away from its default falls back.
HONOURED_FIELDS = frozenset({
    "max_new_tokens", "max_length", "min_new_tokens", "min_length", "eos_token_id", "pad_token_id", "bos_token_id",
    "do_sample", "num_beams", "use_cache", "transformers_version", "_from_model_config", "decoder_start_token_id",
    # sampling knobs: inert when do_sample is False (transformers ignores them for greedy search too)
    "temperature", "top_k", "top_p", "min_p", "typical_p",
})


@dataclass(frozen=True)
class DecoderLayout:
    """What a native loop must know about the exported decoder (read from the artifact and config)."""

    num_layers: int
    num_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    eos_token_ids: tuple[int, ...]


@dataclass(frozen=True)
class GreedyRequest:
    """One greedy call: a single prompt and its token limits."""

    prompt: np.ndarray  # int64, shape (1, prompt_length)
    max_new_tokens: int
    min_new_tokens: int
    eos_token_ids: tuple[int, ...]


class NativeDecoder(Protocol):
    engine: str
    layout: DecoderLayout

    def greedy(self, request: GreedyRequest) -> list[int]:
        """The new tokens (an end-of-sequence id that stopped the loop included, as transformers returns it)."""
        ...


def emittable(ids: tuple[int, ...], vocab_size: int) -> tuple[int, ...]:
    """The ids among ``ids`` that a decoder with ``vocab_size`` logits can produce.

    An end-of-sequence id outside the vocabulary never stops a loop, so dropping it changes no
    token. Handing it to a native loop is not harmless: while ``min_new_tokens`` holds, the loop
    suppresses each eos id by writing -inf at that index of the logits, and openvino-genai writes
    outside the buffer (heap corruption; seen as a crash in about 1 run of 6, measured)."""
    return tuple(i for i in ids if 0 <= i < vocab_size)


def _ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple, set)) else [value]))


def _as_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def greedy_request(default_config: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> GreedyRequest | str:
    """The call as a :class:`GreedyRequest`, or the reason the native loop cannot run it."""
    import copy

    if args:
        return "positional generate() arguments other than the prompt"
    extra = sorted(set(kwargs) - PLAIN_KWARGS - HONOURED_FIELDS)
    if extra:
        return f"generate() argument {extra[0]!r}"
    config = copy.deepcopy(kwargs.get("generation_config") or default_config)
    config.update(**{k: v for k, v in kwargs.items() if k in HONOURED_FIELDS})
    defaults = type(config)().to_dict()
    changed = sorted(k for k, v in config.to_dict().items() if k not in HONOURED_FIELDS and v not in (None, False) and v != defaults.get(k, v))
    if changed:
        return f"generation setting {changed[0]}={getattr(config, changed[0], None)!r}"
    if config.do_sample or (config.num_beams or 1) != 1:
        return "sampling or beam search (the native loop runs greedy search only)"
    if config.use_cache is False:
        return "use_cache=False"
    ids = kwargs.get("input_ids")
    if ids is None:
        return "no input_ids"
    prompt = _as_numpy(ids)
    if prompt.ndim != 2 or prompt.shape[0] != 1 or not np.issubdtype(prompt.dtype, np.integer):
        return f"input_ids of shape {tuple(prompt.shape)} (the native loop takes one prompt, batch 1)"
    mask = kwargs.get("attention_mask")
    if mask is not None and not bool((_as_numpy(mask) == 1).all()):
        return "an attention mask with padding"
    length = prompt.shape[1]
    if config.max_new_tokens is not None:
        max_new = int(config.max_new_tokens)
    else:
        max_new = int(config.max_length) - length
    min_new = int(config.min_new_tokens) if config.min_new_tokens is not None else max(0, int(config.min_length or 0) - length)
    if max_new < 1:
        return f"max_new_tokens={max_new}"
    return GreedyRequest(prompt.astype(np.int64), max_new, min(min_new, max_new), _ids(config.eos_token_id))


class NativeGenerationMixin:
    """Put before ``GenerativeModel`` in an OBModel's bases: ``generate()`` tries the native loop first."""

    generation_engine: str = "auto"
    last_generation_engine: str | None = None
    """The engine the latest ``generate()`` ran: an engine name such as "openvino-genai", or "transformers"."""
    generation_fallback_reason: str | None = None
    """Why the latest ``generate()`` did not use the native loop (None when it did, or none exists)."""

    session: Any
    config: Any
    generation_config: Any
    _native: NativeDecoder | None
    _native_error: str | None = None

    def set_generation_engine(self, engine: str) -> None:
        if engine not in ENGINES:
            raise InputError(f"generation_engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.generation_engine = engine

    def _decoder_layout(self) -> DecoderLayout | None:
        return None

    def native_decoder(self) -> NativeDecoder | None:
        """The session's native loop (built on first use), or None when the backend offers none or it
        failed to load (the reason then goes to ``generation_fallback_reason``)."""
        if getattr(self, "_native", None) is None and getattr(self, "_native_error", None) is None:
            factory = getattr(self.session, "native_decoder", None)
            layout = self._decoder_layout()
            try:
                self._native = factory(layout) if callable(factory) and layout is not None else None
            except ArtifactError:  # a graph file that fails its check is an error, as at load, not a reason to fall back
                raise
            except OptibridgeError as exc:
                self._native_error = str(exc)
        return getattr(self, "_native", None)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """transformers' ``generate``; greedy batch-1 calls run in the backend's native loop (module docstring)."""
        if self.generation_engine != TRANSFORMERS_ENGINE:
            found = self._try_native(args, kwargs)
            if found is not None:
                return found
        else:
            self.generation_fallback_reason = "generation_engine='transformers'"
        self.last_generation_engine = TRANSFORMERS_ENGINE
        return super().generate(*args, **kwargs)  # type: ignore[misc]  # GenerationMixin comes later in the MRO

    def _try_native(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import torch

        if args and "input_ids" not in kwargs:  # generate(input_ids) positionally, as transformers allows
            kwargs, args = {**kwargs, "input_ids": args[0]}, args[1:]
        request = greedy_request(self.generation_config, args, kwargs)
        decoder = self.native_decoder() if not isinstance(request, str) else None
        if isinstance(request, GreedyRequest) and decoder is not None:
            request = _within_vocabulary(request, decoder.layout.vocab_size)
        fixed_eos = getattr(decoder, "fixed_eos_token_ids", None)
        if isinstance(request, GreedyRequest) and decoder is not None and fixed_eos is not None and set(request.eos_token_ids) != set(fixed_eos):
            request = f"eos_token_id={list(request.eos_token_ids)} ({decoder.engine} stops at {list(fixed_eos)}, set when it loaded)"
        if isinstance(request, str) or decoder is None:
            reason = request if isinstance(request, str) else getattr(self, "_native_error", None) or f"backend {getattr(self.session, 'backend', '?')} offers no native loop for this model"
            self.generation_fallback_reason = reason
            if self.generation_engine == "native":
                raise InputError(f"generation_engine='native' cannot run this call: {reason}; use generation_engine='auto' to fall back")
            return None
        try:
            new = decoder.greedy(request)
        except OptibridgeError as exc:  # the runtime refused this graph: use transformers from now on
            self._native, self._native_error = None, str(exc)
            self.generation_fallback_reason = str(exc)
            if self.generation_engine == "native":
                raise
            return None
        self.last_generation_engine = decoder.engine
        self.generation_fallback_reason = None
        return torch.from_numpy(np.concatenate([request.prompt, np.asarray([new], np.int64)], axis=1))


def _within_vocabulary(request: GreedyRequest, vocab_size: int) -> GreedyRequest:
    """``request`` with only the eos ids the decoder can emit (:func:`emittable`); with none left,
    ``min_new_tokens`` has nothing to suppress and is dropped, so no loop indexes its logits by it."""
    eos = emittable(request.eos_token_ids, vocab_size)
    return replace(request, eos_token_ids=eos, min_new_tokens=request.min_new_tokens if eos else 0)
