"""Mixture-of-experts layers in a form both ONNX exporters can capture, and that stays sparse.

transformers (5.x) stores a layer's experts as 3-D weight tensors and dispatches their forward through
``config._experts_implementation``: ``grouped_mm`` (a custom op no ONNX exporter knows), ``batched_mm``
(gathers one copy of an expert's weights per routed token: fine for one token, gigabytes for a
prompt) or eager (a Python loop over the experts that happened to be hit, which tracing bakes in).

:func:`traceable_experts` gives each such module, for the duration of an export, a forward that loops
over *every* expert in Python (a fixed, static unroll) and lets the graph pick each expert's tokens
with ``NonZero``: an expert nobody routed to multiplies a zero-row matrix, so the graph reads only
the weights of the experts in use, as the model does. The math is transformers' own (its gate, bias,
transposed layouts and post-expert norm are read off the module), so validation against the untouched
model still decides whether the graph is right.
"""

from __future__ import annotations

import contextlib
import inspect
import types
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from .swapped_forwards import swapped_forwards


def is_dispatched_experts(module: torch.nn.Module) -> bool:
    """True for an experts module built by transformers' ``use_experts_implementation`` decorator."""
    needed = ("num_experts", "has_gate", "has_bias", "is_transposed", "down_proj", "_apply_gate")
    return all(hasattr(module, name) for name in needed) and isinstance(module.down_proj, torch.Tensor)


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> torch.Tensor:
    out = x @ weight if transposed else F.linear(x, weight)
    return out if bias is None else out + bias


def sparse_experts_forward(self: Any, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
    """Experts forward with a static loop over experts and data-dependent token selection per expert.

    Called like the module's own forward: (hidden states (tokens, hidden), expert indices (tokens, k),
    routing weights (tokens, k)), whatever the model names them (GPT-OSS: ``router_indices``...)."""
    bound = inspect.signature(type(self).forward).bind(self, *args, **kwargs)
    hidden_states, top_k_index, top_k_weights = list(bound.arguments.values())[1:4]
    output = torch.zeros_like(hidden_states)
    for expert in range(int(self.num_experts)):
        token_idx, slot = torch.where(top_k_index == expert)
        states = hidden_states[token_idx]
        if self.has_gate:
            up_weight, up_bias = self.gate_up_proj[expert], self.gate_up_proj_bias[expert] if self.has_bias else None
        else:
            up_weight, up_bias = self.up_proj[expert], self.up_proj_bias[expert] if self.has_bias else None
        states = _project(states, up_weight, up_bias, self.is_transposed)
        states = self._apply_gate(states) if self.has_gate else self.act_fn(states)
        down_bias = self.down_proj_bias[expert] if self.has_bias else None
        states = _project(states, self.down_proj[expert], down_bias, self.is_transposed)
        if getattr(self, "has_post_expert_norm", False):
            states = self.post_expert_norm(states)
        states = states * top_k_weights[token_idx, slot].unsqueeze(-1)
        output = output.index_add(0, token_idx, states.to(output.dtype))
    return output


@contextlib.contextmanager
def traceable_experts(model: torch.nn.Module) -> Iterator[int]:
    """Give every dispatched experts module in ``model`` :func:`sparse_experts_forward` until the block
    ends; yields how many were changed. Instance attributes only: the class and other models are untouched."""
    # a module that already has an instance forward (a hook, a caller's own swap) is left as it is
    experts = [module for module in model.modules() if is_dispatched_experts(module) and "forward" not in vars(module)]
    with swapped_forwards((module, types.MethodType(sparse_experts_forward, module)) for module in experts) as changed:
        yield changed
