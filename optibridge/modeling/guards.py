"""Input values the graph would silently misread, refused before any backend runs them.

PyTorch raises IndexError on a token id outside the embedding table; a runtime's Gather may clamp
or read foreign memory and return logits. Every call of an ``OBModel`` (forward, generate, the
device path) reaches its sessions, so each session is wrapped once in :class:`GuardedSession`,
which checks the feed: no empty batch or empty token sequence, token ids inside the vocabulary,
token type ids inside their table, positions inside a learned position table, image sizes a
windowed model runs at. Cost: one min/max per id tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ArtifactError, BackendError, InputError, OptibridgeError, first_line
from ..image_placeholders import IMAGE_FEATURES

TOKEN_ID_INPUTS = ("input_ids", "decoder_input_ids")
# Model families whose learned position table is offset by padding_idx + 1 (RoBERTa counts positions from 2).
PADDING_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "mpnet"})
LEARNED_POSITION_TYPES = frozenset({
    "bert", "distilbert", "electra", "albert", "mobilebert", "ernie", "gpt2", "gpt_neo", "biogpt",
} | PADDING_OFFSET_POSITIONS)
"""Families with a learned absolute position table of ``max_position_embeddings`` rows (rotary and
relative families, which have no such table, are not listed: nothing is checked for them)."""


def positive_int(value: Any) -> int | None:
    """``value`` if it is a positive int (not a bool), else None: how a size read from a config or
    optibridge.json is accepted."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


@dataclass(frozen=True)
class InputLimits:
    """Bounds from the model config; None where the config does not say (then nothing is checked)."""

    vocab_size: int | None = None
    type_vocab_size: int | None = None
    max_positions: int | None = None
    """Longest sequence a learned absolute position table holds (None: relative/rotary positions)."""
    image_multiple: int | None = None
    """Heights and widths of ``pixel_values`` must be multiples of this (a windowed model, recorded at export
    as ``extra["image_size"]["multiple_of"]``; PyTorch fails at other sizes too)."""

    @classmethod
    def from_config(cls, config: Any) -> "InputLimits":
        def positive(name: str) -> int | None:
            return positive_int(getattr(config, name, None))

        model_type = getattr(config, "model_type", "")
        positions = positive("max_position_embeddings")
        learned = model_type in LEARNED_POSITION_TYPES and getattr(config, "position_embedding_type", "absolute") == "absolute"
        learned |= model_type == "deberta-v2" and bool(getattr(config, "position_biased_input", False))
        if positions is not None and model_type in PADDING_OFFSET_POSITIONS:
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        return cls(positive("vocab_size"), positive("type_vocab_size"), positions if learned else None)


def value_bounds(value: Any) -> tuple[int, int]:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a device: reduce there, copy two numbers
        return int(value.min().item()), int(value.max().item())
    array = np.asarray(value)
    return int(array.min()), int(array.max())


def check_feed(feed: Mapping[str, Any], limits: InputLimits, takes_past: bool) -> None:
    """Raise :class:`InputError` for a feed the graph would run on but misread."""
    for name, value in feed.items():
        shape = tuple(getattr(value, "shape", ()))
        if shape and shape[0] == 0 and name != IMAGE_FEATURES:  # image rows: none after the prompt's step
            raise InputError(f"{name} has an empty batch (shape {shape}); pass at least one row")
    for name in TOKEN_ID_INPUTS:
        ids = feed.get(name)
        if ids is None:
            continue
        if ids.shape[-1] == 0:
            raise InputError(f"{name} has no tokens (shape {tuple(ids.shape)}); pass at least one token per row")
        low, high = value_bounds(ids)
        if low < 0 or (limits.vocab_size is not None and high >= limits.vocab_size):
            bad = low if low < 0 else high
            raise InputError(
                f"{name} holds token id {bad}, outside the vocabulary [0, {limits.vocab_size or '?'}); "
                "use the model's own tokenizer (ids must be >= 0 and < config.vocab_size)"
            )
        if limits.max_positions is not None and not takes_past and "position_ids" not in feed and ids.shape[-1] > limits.max_positions:
            raise InputError(
                f"{name} has {ids.shape[-1]} tokens, longer than the {limits.max_positions} positions this model has; "
                f"truncate the input (tokenizer(..., truncation=True, max_length={limits.max_positions}))"
            )
    types = feed.get("token_type_ids")
    if types is not None and limits.type_vocab_size is not None and types.size:
        low, high = value_bounds(types)
        if low < 0 or high >= limits.type_vocab_size:
            raise InputError(f"token_type_ids holds {low if low < 0 else high}, outside [0, {limits.type_vocab_size}) for this model")
    pixels = feed.get("pixel_values")
    shape = tuple(getattr(pixels, "shape", ()))
    multiple = limits.image_multiple
    if multiple is not None and multiple > 1 and len(shape) == 4 and (shape[2] % multiple or shape[3] % multiple):
        raise InputError(f"pixel_values is {shape[2]}x{shape[3]}; this model takes heights and widths in multiples of "
                         f"{multiple} (its attention window), as PyTorch does: pad the image (its image processor's "
                         f"do_pad / pad_size does)")
    positions = feed.get("position_ids")
    if positions is not None and limits.max_positions is not None and positions.size:
        low, high = value_bounds(positions)
        if high >= limits.max_positions:
            raise InputError(
                f"position {high} is past the last of the {limits.max_positions} positions this model has (the sequence, "
                f"prompt plus generated tokens, is too long); keep prompt + max_new_tokens <= {limits.max_positions}"
            )


class GuardedSession:
    """A session whose every call (run, run_step, run_torch) is checked by :func:`check_feed` first;
    everything else (``stateful``, ``reset``, ``session``, ``compiled``...) is the wrapped session's."""

    def __init__(self, inner: Any, limits: InputLimits) -> None:
        self.__dict__["_inner"] = inner
        self.__dict__["_limits"] = limits
        self.__dict__["_takes_past"] = any(n.startswith("past") for n in getattr(inner, "input_names", []))

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("_inner")
        if inner is None:  # during copy/unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(inner, name)

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        check_feed(inputs, self._limits, self._takes_past)
        return self._call("run", inputs)

    def run_step(self, inputs: Mapping[str, Any], beam_idx: Any = None, logits_to_keep: int = 0) -> dict[str, Any]:
        check_feed(inputs, self._limits, True)
        return self._call("run_step", inputs, beam_idx, logits_to_keep)

    def run_torch(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        check_feed(inputs, self._limits, self._takes_past)
        return self._call("run_torch", inputs)

    def _call(self, method: str, inputs: Mapping[str, Any], *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = getattr(self._inner, method)(inputs, *args)
            return result
        except OptibridgeError:
            raise
        except Exception as exc:  # the runtime's own exception types: one line that says where
            shapes = ", ".join(f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in inputs.items())
            raise BackendError(
                f"the {getattr(self._inner, 'backend', 'backend')} runtime failed on inputs {shapes}: {first_line(exc)}"
            ) from exc


def check_interface(graph: str, spec: Any, session: Any) -> None:
    """The graph's real inputs/outputs must be those optibridge.json describes (an edited manifest
    would otherwise feed the wrong tensors)."""
    for kind, described, actual in (("inputs", spec.input_names, session.input_names), ("outputs", spec.output_names, session.output_names)):
        if set(described) != set(actual):
            raise ArtifactError(
                f"optibridge.json describes the {kind} of graph {graph!r} as {', '.join(described) or 'none'}, but the graph "
                f"has {', '.join(actual) or 'none'}; the manifest was edited or belongs to another graph: re-export the model"
            )


def guard(session: Any, limits: InputLimits) -> Any:
    return session if isinstance(session, GuardedSession) else GuardedSession(session, limits)
