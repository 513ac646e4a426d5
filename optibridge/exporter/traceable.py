"""``torch.nn.MultiheadAttention`` written out in plain tensor ops, for the TorchScript exporter.

TorchScript's ONNX export of ``nn.MultiheadAttention`` writes the key length (for a vision pooling
head: the number of patches) as a constant, so the graph only runs at the traced image size (SigLIP's
head). The same attention spelled with ``linear``/``matmul``/``softmax`` keeps every size symbolic.
:func:`traceable_attention_modules` swaps such modules in for the duration of a trace and puts the
originals back; validation then compares the graph with the untouched model.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F


class TraceableMultiheadAttention(torch.nn.Module):
    """The math of an ``nn.MultiheadAttention`` in eval mode without masks; anything else goes to the original."""

    original: torch.nn.MultiheadAttention

    def __init__(self, original: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        object.__setattr__(self, "original", original)  # not a submodule: it would be traced otherwise
        self.in_proj_weight = original.in_proj_weight
        self.in_proj_bias = original.in_proj_bias
        self.out_proj = original.out_proj
        self.num_heads = original.num_heads
        self.head_dim = original.head_dim
        self.embed_dim = original.embed_dim
        self.batch_first = original.batch_first

    @staticmethod
    def supports(module: torch.nn.MultiheadAttention) -> bool:
        return bool(module._qkv_same_embed_dim and module.in_proj_weight is not None and module.bias_k is None
                    and module.bias_v is None and not module.add_zero_attn)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = True, attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal or self.training or query.dim() != 3:
            result: tuple[torch.Tensor, torch.Tensor | None] = self.original(
                query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
                average_attn_weights=average_attn_weights, is_causal=is_causal)
            return result
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q, k, v = (self._heads(F.linear(x, w, b)) for x, w, b in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v)))
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2)
        out = self.out_proj(out.reshape(out.shape[0], out.shape[1], self.embed_dim))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_attn_weights else weights

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)


@contextlib.contextmanager
def traceable_attention_modules(model: torch.nn.Module) -> Iterator[int]:
    """Swap every supported ``nn.MultiheadAttention`` in ``model`` for :class:`TraceableMultiheadAttention`
    until the block ends; yields how many were swapped."""
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.MultiheadAttention) and TraceableMultiheadAttention.supports(child):
                setattr(parent, name, TraceableMultiheadAttention(child))
                swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
