"""Gradual magnitude pruning: attention heads and FFN channels (structured), weights (unstructured).

Structured pruning zeroes the lowest-magnitude heads/channels of every layer on a cubic schedule
while training goes on (the rest of the network adapts), then cuts them out of the Linear layers
(:meth:`Pruner.finalize`), so the exported graph has smaller matrices. A zeroed head (its query,
key, value rows and its columns of the attention output) and a zeroed FFN channel (its
intermediate row and output column) contribute exactly nothing, so cutting them changes no output.

transformers 5 removed ``prune_heads``; the cut is done here for the BERT layout (bert, roberta,
xlm-roberta, camembert, electra), whose attention reshapes with ``view(..., -1, head_size)`` and
therefore runs with any number of heads per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .config import PruningConfig, TrainingConfigError

BERT_LAYOUT_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


@dataclass
class _Layer:
    query: torch.nn.Linear
    key: torch.nn.Linear
    value: torch.nn.Linear
    attention_out: torch.nn.Linear
    intermediate: torch.nn.Linear
    output: torch.nn.Linear
    attention: Any
    """The self-attention module (holds ``attention_head_size``)."""


def _layers(model: Any) -> list[_Layer]:
    encoder = getattr(getattr(model, "base_model", model), "encoder", None)
    found = []
    for layer in getattr(encoder, "layer", ()):
        attention = layer.attention.self
        found.append(_Layer(attention.query, attention.key, attention.value, layer.attention.output.dense,
                            layer.intermediate.dense, layer.output.dense, attention))
    return found


def check_prunable(model: Any, config: PruningConfig) -> None:
    model_type = getattr(model.config, "model_type", None)
    if config.structured is not None and (model_type not in BERT_LAYOUT_TYPES or not _layers(model)):
        raise TrainingConfigError(
            f"structured pruning supports the BERT layout ({', '.join(BERT_LAYOUT_TYPES)}), not {model_type!r}; "
            "use PruningConfig(structured=None, unstructured=0.5) for magnitude sparsity on this model"
        )
    if config.unstructured is not None and not _linears(model):
        raise TrainingConfigError(f"found no encoder Linear layers to sparsify in {type(model).__name__}")


def _linears(model: Any) -> list[torch.nn.Linear]:
    layers = _layers(model)
    if layers:
        return [m for layer in layers for m in (layer.query, layer.key, layer.value, layer.attention_out, layer.intermediate, layer.output)]
    encoder = getattr(getattr(model, "base_model", model), "encoder", None) or model
    return [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]


def cubic_sparsity(target: float, progress: float, start: float, end: float) -> float:
    """Zhu & Gupta's schedule: 0 before ``start``, ``target`` after ``end``, cubic in between (fast first)."""
    if progress <= start:
        return 0.0
    fraction = min(1.0, (progress - start) / (end - start))
    return target * (1.0 - (1.0 - fraction) ** 3)


class Pruner:
    """Holds the masks; :meth:`step` after each optimizer step, :meth:`finalize` when the phase ends."""

    def __init__(self, model: Any, config: PruningConfig) -> None:
        check_prunable(model, config)
        self.model = model
        self.config = config
        self.layers = _layers(model)
        self.head_masks = [torch.ones(self._heads(layer), dtype=torch.bool) for layer in self.layers]
        self.ffn_masks = [torch.ones(layer.intermediate.out_features, dtype=torch.bool) for layer in self.layers]
        self.weight_masks: dict[torch.nn.Linear, torch.Tensor] = {}
        self.sparsity = 0.0
        self.finalized: dict[str, Any] | None = None

    @staticmethod
    def _heads(layer: _Layer) -> int:
        return int(layer.query.out_features // layer.attention.attention_head_size)

    def step(self, global_step: int, max_steps: int) -> None:
        progress = global_step / max(max_steps, 1)
        if global_step % self.config.frequency and progress < self.config.end:
            self.apply()  # masks unchanged: keep pruned weights at zero after the optimizer moved them
            return
        self.update(progress)

    @torch.no_grad()
    def update(self, progress: float) -> None:
        config = self.config
        self.sparsity = cubic_sparsity(config.target_sparsity, progress, config.start, config.end)
        for i, layer in enumerate(self.layers):
            if config.heads:
                self.head_masks[i] = self._keep_top(self._head_scores(layer), self.sparsity, self.head_masks[i])
            if config.ffn:
                scores = layer.intermediate.weight.norm(dim=1) * layer.output.weight.norm(dim=0)
                self.ffn_masks[i] = self._keep_top(scores, self.sparsity, self.ffn_masks[i])
        if config.unstructured is not None:
            share = cubic_sparsity(config.unstructured, progress, config.start, config.end)
            for linear in _linears(self.model):
                count = int(share * linear.weight.numel())
                if count:
                    threshold = linear.weight.abs().flatten().kthvalue(count).values
                    self.weight_masks[linear] = linear.weight.abs() > threshold
        self.apply()

    @staticmethod
    def _keep_top(scores: torch.Tensor, sparsity: float, previous: torch.Tensor) -> torch.Tensor:
        """Keep the highest-scoring units; pruned units stay pruned, at least one unit stays."""
        remove = min(int(math.floor(sparsity * scores.numel() + 1e-9)), scores.numel() - 1)
        scores = scores.masked_fill(~previous, -1.0)
        keep = torch.ones_like(previous)
        if remove:
            keep[scores.argsort()[:remove]] = False
        return keep & previous

    def _head_scores(self, layer: _Layer) -> torch.Tensor:
        size = layer.attention.attention_head_size
        heads = self._heads(layer)
        rows = sum(m.weight.reshape(heads, size, -1).pow(2).sum(dim=(1, 2)) for m in (layer.query, layer.key, layer.value))
        cols = layer.attention_out.weight.reshape(-1, heads, size).pow(2).sum(dim=(0, 2))
        return (rows + cols).sqrt()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero what the masks prune (after every optimizer step, which would move it again)."""
        for layer, heads, ffn in zip(self.layers, self.head_masks, self.ffn_masks):
            rows = heads.repeat_interleave(layer.attention.attention_head_size)
            for linear in (layer.query, layer.key, layer.value):
                linear.weight[~rows] = 0.0
                linear.bias[~rows] = 0.0
            layer.attention_out.weight[:, ~rows] = 0.0
            layer.intermediate.weight[~ffn] = 0.0
            layer.intermediate.bias[~ffn] = 0.0
            layer.output.weight[:, ~ffn] = 0.0
        for linear, mask in self.weight_masks.items():
            linear.weight.mul_(mask)

    @torch.no_grad()
    def finalize(self) -> dict[str, Any]:
        """Reach the target, cut the pruned heads/channels out of the Linear layers, update the config."""
        if self.finalized is not None:
            return self.finalized
        params_before = sum(p.numel() for p in self.model.parameters())
        self.update(max(1.0, self.config.end))
        pruned_heads: dict[str, list[int]] = {}
        for i, (layer, heads, ffn) in enumerate(zip(self.layers, self.head_masks, self.ffn_masks)):
            size = layer.attention.attention_head_size
            rows = heads.repeat_interleave(size).nonzero().flatten()
            for name in ("query", "key", "value"):
                setattr(layer.attention, name, _slice(getattr(layer.attention, name), rows, dim=0))
            layer.attention.num_attention_heads = int(heads.sum())
            layer.attention.all_head_size = int(heads.sum()) * size
            _set_linear(self.model, layer.attention_out, _slice(layer.attention_out, rows, dim=1))
            channels = ffn.nonzero().flatten()
            _set_linear(self.model, layer.intermediate, _slice(layer.intermediate, channels, dim=0))
            _set_linear(self.model, layer.output, _slice(layer.output, channels, dim=1))
            if not heads.all():
                pruned_heads[str(i)] = (~heads).nonzero().flatten().tolist()
        self.layers = _layers(self.model)
        # Same count per layer, so one intermediate_size describes every layer; the removed heads
        # are recorded per layer (BERT derives its head size from num_attention_heads, which must stay).
        if self.config.ffn:
            self.model.config.intermediate_size = int(self.ffn_masks[0].sum())
        if pruned_heads:
            self.model.config.optibridge_pruned_heads = pruned_heads
        self.weight_masks = {}
        if self.config.unstructured is not None:
            # Measured on the cut layers: the removed heads/channels no longer count towards the share.
            for linear in _linears(self.model):
                count = int(self.config.unstructured * linear.weight.numel())
                threshold = linear.weight.abs().flatten().kthvalue(count).values
                self.weight_masks[linear] = linear.weight.abs() > threshold
                linear.weight.mul_(self.weight_masks[linear])
        params_after = sum(p.numel() for p in self.model.parameters())
        self.finalized = {
            "heads_kept_per_layer": [int(m.sum()) for m in self.head_masks],
            "heads_per_layer": int(self.head_masks[0].numel()) if self.head_masks else 0,
            "ffn_channels_kept_per_layer": [int(m.sum()) for m in self.ffn_masks],
            "ffn_channels_per_layer": int(self.ffn_masks[0].numel()) if self.ffn_masks else 0,
            "parameters_before": params_before,
            "parameters_after": params_after,
            "weight_sparsity": self.weight_sparsity() if self.config.unstructured else None,
        }
        # The cut layers keep everything they hold: later apply() calls (QAT phase) only re-zero
        # the unstructured weights.
        self.head_masks = [torch.ones(self._heads(layer), dtype=torch.bool) for layer in self.layers]
        self.ffn_masks = [torch.ones(layer.intermediate.out_features, dtype=torch.bool) for layer in self.layers]
        return self.finalized

    def weight_sparsity(self) -> float:
        """Share of zeros in the encoder's Linear weights."""
        linears = _linears(self.model)
        zeros = sum(int((m.weight == 0).sum()) for m in linears)
        return zeros / max(sum(m.weight.numel() for m in linears), 1)


def _slice(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A new Linear holding only the kept output rows (dim 0) or input columns (dim 1)."""
    weight = linear.weight.index_select(dim, index).clone()
    out_features, in_features = weight.shape
    new = torch.nn.Linear(in_features, out_features, bias=linear.bias is not None)
    new.weight.copy_(weight)
    if linear.bias is not None:
        new.bias.copy_(linear.bias[index] if dim == 0 else linear.bias)
    new.weight.requires_grad_(linear.weight.requires_grad)
    return new


def _set_linear(model: Any, old: torch.nn.Linear, new: torch.nn.Linear) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return
    raise TrainingConfigError("internal: a Linear layer to prune is no longer in the model")
