"""Rotary position embeddings written with complex numbers, rewritten in real arithmetic for the export.

A few transformers models (DeepSeek-V2, Llama 4) build their rotary table with ``torch.polar`` and rotate
queries and keys by complex multiplication (``view_as_complex`` ... ``view_as_real``). ONNX has no complex
type and the dynamo exporter stops at the first complex tensor. :func:`real_valued_rotary` swaps, for the
duration of an export, each such model's rotary module forward for one that returns the table as real
(cos, sin) pairs, and its module-level ``apply_rotary_emb`` for the same rotation spelled out on those
pairs. The math is identical; validation compares the graph with the untouched model.
"""

from __future__ import annotations

import contextlib
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from .swapped_forwards import swapped_forwards


@dataclass(frozen=True)
class ComplexRotary:
    """One model family's complex rotary: its rotary module class, and where its apply function inserts the head axis."""

    module: str
    rotary_class: str
    head_axis: int
    """Axis of the rotated tensors the per-position table is broadcast over: 1 for (batch, heads, seq, dim), 2 for (batch, seq, heads, dim)."""


FAMILIES = (
    ComplexRotary("transformers.models.deepseek_v2.modeling_deepseek_v2", "DeepseekV2RotaryEmbedding", head_axis=1),
    ComplexRotary("transformers.models.llama4.modeling_llama4", "Llama4TextRotaryEmbedding", head_axis=2),
)


def _real_rotary_forward(self: Any, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """The rotary table as (..., dim / 2, 2) real pairs: what ``torch.polar(1, freqs) * scaling`` holds."""
    freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
    table: torch.Tensor = torch.stack((freqs.cos(), freqs.sin()), dim=-1) * self.attention_scaling
    return table


def _rotate(x: torch.Tensor, table: torch.Tensor, head_axis: int) -> torch.Tensor:
    """``view_as_real(view_as_complex(x pairs) * table).flatten(3)`` on real pairs."""
    table = table.unsqueeze(head_axis).to(x.device)
    cos, sin = table[..., 0], table[..., 1]
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    return torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1).flatten(3).type_as(x)


def _real_apply(head_axis: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _rotate(xq, freqs_cis, head_axis), _rotate(xk, freqs_cis, head_axis)

    return apply_rotary_emb


@contextlib.contextmanager
def real_valued_rotary(model: torch.nn.Module) -> Iterator[int]:
    """Rewrite the complex rotary embeddings of ``model`` (see the module docstring) until the block ends;
    yields how many rotary modules were changed."""
    swaps: list[tuple[torch.nn.Module, Callable[..., Any]]] = []
    patched: dict[str, Any] = {}
    try:  # the apply functions already swapped come back even if a later step fails
        for module in model.modules():
            family = next((f for f in FAMILIES if type(module).__module__ == f.module and type(module).__name__ == f.rotary_class), None)
            if family is None or "forward" in vars(module):
                continue
            from transformers.modeling_rope_utils import dynamic_rope_update  # the wrapper the original forward has (dynamic RoPE types)

            swaps.append((module, types.MethodType(dynamic_rope_update(_real_rotary_forward), module)))  # type: ignore[no-untyped-call]
            if family.module not in patched:
                namespace = sys.modules[family.module]
                patched[family.module] = getattr(namespace, "apply_rotary_emb")  # noqa: B009  (a module global; mypy cannot see it)
                setattr(namespace, "apply_rotary_emb", _real_apply(family.head_axis))  # noqa: B010
        with swapped_forwards(swaps) as changed:
            yield changed
    finally:
        for name, original in patched.items():
            setattr(sys.modules[name], "apply_rotary_emb", original)  # noqa: B010
