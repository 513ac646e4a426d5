"""Between transformers ``Cache`` objects and the flat per-layer (key, value) tensors of ONNX graphs.

transformers 5.x builds a ``DynamicCache`` from per-layer pairs and exposes ``cache.layers[i].keys``;
4.x had ``from_legacy_cache`` and ``key_cache``/``value_cache`` lists. Both are handled here so
the rest of optibridge does not care which one is installed.

transformers 5.24 also renamed the cache argument of ``forward()`` and the cache field of the
output classes from ``past_key_values`` to ``cache``; ``generate()`` now passes ``cache=``.
``cache_name()``/``take_cache()``/``output_cache()`` keep both spellings working.
"""

from __future__ import annotations

from functools import cache as _memoize
from typing import Any, Mapping, Sequence

import torch

from .errors import InputError


@_memoize
def cache_name() -> str:
    """What the installed transformers calls the KV cache in ``forward()`` arguments and model
    outputs: ``"cache"`` from 5.24 on, ``"past_key_values"`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def take_cache(past_key_values: Any, kwargs: Mapping[str, Any]) -> Any:
    """The cache a ``forward()`` was given under either name (``generate()`` of transformers
    ≥ 5.24 passes ``cache=``; older releases and user code pass ``past_key_values=``)."""
    new_style = kwargs.get("cache")
    if new_style is not None and past_key_values is not None:
        raise InputError("got both cache and past_key_values: pass the KV cache once, as cache (transformers >= 5.24) or past_key_values")
    return new_style if new_style is not None else past_key_values


def cache_shapes(layout: Mapping[str, Any], batch: int, length: int = 0) -> list[tuple[int, int, int, int]]:
    """Shapes of a decoder graph's flat past inputs (key, value per layer) from an artifact's ``kv_cache``
    record; values have their own width where the record gives one (multi-head latent attention)."""
    heads, key_width = int(layout["num_heads"]), int(layout["head_dim"])
    value_width = int(layout.get("value_head_dim") or key_width)
    return [(batch, heads, length, width) for _ in range(int(layout["num_layers"])) for width in (key_width, value_width)]


def output_cache(output: Any) -> Any:
    """The cache a transformers model returned, under whichever name its output class uses."""
    return getattr(output, cache_name())


def cache_from_pairs(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], *, zero_copy: bool = False) -> Any:
    """A ``DynamicCache`` holding the given per-layer (key, value) tensors.

    ``zero_copy`` hands the tensors to the cache as they are. The public constructor concatenates
    each one onto an empty tensor — a full copy of the cache per layer per step, which measured as
    more than half of the time of a batch-4 GPT-2-small generate() on ONNX Runtime.
    """
    from transformers import DynamicCache

    if zero_copy:
        try:
            from transformers.cache_utils import DynamicLayer
        except ImportError:  # transformers 4.x: no layer objects
            pass
        else:
            cache = DynamicCache()
            for key, value in pairs:
                layer = DynamicLayer()  # type: ignore[no-untyped-call]  # transformers leaves __init__ unannotated
                try:
                    layer.lazy_initialization(key, value)
                except TypeError:  # transformers 4.56-4.57: lazy_initialization(key_states)
                    layer.lazy_initialization(key)  # type: ignore[call-arg]  # that release's signature
                layer.keys, layer.values = key, value
                cache.layers.append(layer)
            return cache
    try:
        return DynamicCache(ddp_cache_data=list(pairs))
    except TypeError:  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(pairs))  # type: ignore[attr-defined]  # 4.x only


def cache_pairs(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The per-layer (key, value) tensors of a ``DynamicCache`` (empty list for an empty cache)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        # A cache made by generate() from the config has layers that are not initialised yet.
        return [(layer.keys, layer.values) for layer in layers if getattr(layer, "is_initialized", True) and layer.keys is not None]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers 4.x


def past_length(cache: Any) -> int:
    return 0 if cache is None else int(cache.get_seq_length())


def encoder_decoder_cache(
    self_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    cross_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    zero_copy: bool = False,
) -> Any:
    from transformers import EncoderDecoderCache

    return EncoderDecoderCache(cache_from_pairs(self_pairs, zero_copy=zero_copy), cache_from_pairs(cross_pairs, zero_copy=zero_copy))
