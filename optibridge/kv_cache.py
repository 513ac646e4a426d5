"""Between transformers ``Cache`` objects and the flat per-layer (key, value) tensors of ONNX graphs.

transformers 5.x builds a ``DynamicCache`` from per-layer pairs and exposes ``cache.layers[i].keys``;
4.x had ``from_legacy_cache`` and ``key_cache``/``value_cache`` lists. Both are handled here so
the rest of optibridge does not care which one is installed.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


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
                layer = DynamicLayer()
                layer.lazy_initialization(key, value)
                layer.keys, layer.values = key, value
                cache.layers.append(layer)
            return cache
    try:
        return DynamicCache(ddp_cache_data=list(pairs))
    except TypeError:  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(pairs))


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
