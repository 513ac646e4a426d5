"""Decoder-only LMs with a KV cache: one graph serves the first step (empty past) and every later one.

Graph inputs: ``input_ids``, ``attention_mask`` (past + new tokens), ``position_ids`` (so that
left-padded batches get the positions PyTorch gives them) and ``past_key_values.{i}.key|value``;
outputs ``logits`` and ``present.{i}.key|value`` (past + new). A past of length 0 is valid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from ..artifact import MAIN_GRAPH, MODEL_FILE
from ..kv_cache import cache_from_pairs, cache_name, cache_pairs, cache_shapes, output_cache
from .architectures import forward_parameters
from .encoder import qualified_name
from .inputs import BATCH_AXIS, SEQUENCE_AXIS, token_batch
from .loading import SourceModel
from .logits_to_keep import add_logits_to_keep
from .plan import ExportedGraphs, SessionLoader
from .torch_to_onnx import export_module, graph_spec
from .validate import OutputCheck, ValidationReport, max_abs_diff

PAST_AXIS = "past_sequence_length"
TOTAL_AXIS = "total_sequence_length"


@dataclass(frozen=True)
class KVLayout:
    """Shape of one layer's cached keys/values: (batch, num_heads, sequence, head_dim); values may be
    narrower (``value_head_dim``: multi-head latent attention caches a latent as "key" and the rotary
    part as "value", e.g. DeepSeek-V3)."""

    num_layers: int
    num_heads: int
    head_dim: int
    value_head_dim: int | None = None
    """None: the same as ``head_dim``."""

    def past_names(self, prefix: str = "past_key_values") -> list[str]:
        return [f"{prefix}.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")]

    def empty(self, batch: int, length: int = 0, dtype: Any = np.float32) -> list[np.ndarray]:
        return [np.zeros(shape, dtype) for shape in cache_shapes(asdict(self), batch, length)]


def position_ids_from_mask(attention_mask: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Positions as transformers' generate() computes them: count of real tokens before each one."""
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 1)
    return positions[:, -new_tokens:]


class CausalLMStep(torch.nn.Module):
    """One decoding step with flat tensors in and out, as the ONNX graph has them."""

    zero_copy_cache = False

    def __init__(self, model: torch.nn.Module, use_cache: bool) -> None:
        super().__init__()
        self.model = model
        self.use_cache = use_cache
        # Models with ALiBi (bloom, falcon) or learned offsets take no position_ids: the graph then has none.
        self.takes_positions = "position_ids" in forward_parameters(type(model))
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.step({"input_ids": input_ids}, input_ids, attention_mask, position_ids, past)

    def model_mask(self, attention_mask: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The mask as the model is handed it (the traced step builds the 4-D one itself)."""
        return attention_mask

    def step(self, tokens: dict[str, torch.Tensor], input_ids: torch.Tensor, attention_mask: torch.Tensor,
             position_ids: torch.Tensor, past: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The model on ``tokens`` (``input_ids``, or ``inputs_embeds`` made from them): logits and presents."""
        kwargs: dict[str, Any] = {**tokens, "attention_mask": self.model_mask(attention_mask, input_ids)}
        if self.takes_positions:
            kwargs["position_ids"] = position_ids
        if not self.use_cache:
            return (self.model(**kwargs, use_cache=False, return_dict=True).logits,)
        cache = cache_from_pairs(list(zip(past[0::2], past[1::2])), zero_copy=self.zero_copy_cache)
        out = self.model(**kwargs, **{cache_name(): cache}, use_cache=True, return_dict=True)
        presents = [t for pair in cache_pairs(output_cache(out)) for t in pair]
        return (out.logits, *presents)


def additive_causal_mask(attention_mask: torch.Tensor, input_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 1, new, total) mask: 0 where query ``i`` (at absolute position ``past + i``) may see key
    ``j`` (``j <= past + i`` and not padding), the dtype's minimum elsewhere (not -inf: a fully padded
    row must not turn into NaN). Built from tensor ops only so that a trace keeps every size symbolic."""
    key_index = torch.ones_like(attention_mask[0]).cumsum(0) - 1  # 0 .. total-1
    new_index = torch.ones_like(input_ids[0]).cumsum(0) - 1  # 0 .. new-1
    past = torch.ones_like(attention_mask[0]).sum() - torch.ones_like(input_ids[0]).sum()
    query_position = new_index + past
    allowed = (key_index[None, None, None, :] <= query_position[None, None, :, None]) & attention_mask[:, None, None, :].bool()
    return torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device).masked_fill(~allowed, torch.finfo(dtype).min)


class TracedCausalLMStep(CausalLMStep):
    """:class:`CausalLMStep` for the TorchScript tracer: same inputs, outputs and function, with the mask
    and cache built so that the trace holds at every batch size and past length."""

    zero_copy_cache = True

    def model_mask(self, attention_mask: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        return additive_causal_mask(attention_mask, input_ids, next(self.model.parameters()).dtype)


def kv_layout(model: torch.nn.Module) -> KVLayout:
    """Read the cache layout off a real forward pass: configs spell head counts and sizes in too many ways."""
    with torch.no_grad():
        out = model(input_ids=torch.ones(1, 2, dtype=torch.long), use_cache=True, return_dict=True)
    pairs = cache_pairs(output_cache(out))
    key, value = pairs[0]
    value_width = int(value.shape[3])
    return KVLayout(num_layers=len(pairs), num_heads=int(key.shape[1]), head_dim=int(key.shape[3]),
                    value_head_dim=value_width if value_width != int(key.shape[3]) else None)


@dataclass(frozen=True)
class ExtraInputs:
    """Inputs a decoder graph takes after ``position_ids`` (a visual LM's image rows, :mod:`.visual_lm`):
    the step module that takes them, how the trace's tokens and tensors are made, their names and axes."""

    step: CausalLMStep
    prepare: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]
    """(trace token ids, their mask) → the ids to trace with and the extra tensors."""
    names: list[str]
    axes: dict[str, dict[int, str]] = field(default_factory=dict)
    """Their named axes; the first axis of each is dynamic in the export."""
    new_tokens: int = 0
    """Trace tokens to add to the usual 5 (room for what ``prepare`` puts in)."""


def export_decoder(
    source: SourceModel, staging: Path, *, opset: int | None, external_data: bool, use_cache: bool = True, exporter: str = "dynamo",
    extra_inputs: Callable[[torch.nn.Module, bool, bool], ExtraInputs] | None = None,
) -> ExportedGraphs:
    """``exporter="torchscript"``: the fast path's traced step (fast_path.py), else torch.export's.
    ``extra_inputs(model, use_cache, traced)``: the graph takes more inputs (see :class:`ExtraInputs`)."""
    model = source.model
    layout = kv_layout(model) if use_cache else None
    traced = exporter == "torchscript"
    more = extra_inputs(model, use_cache, traced) if extra_inputs else None
    if more is not None:
        step = more.step
    else:
        step = TracedCausalLMStep(model, use_cache) if traced else CausalLMStep(model, use_cache)

    # Trace: batch 2, 5 new tokens after a past of 4 (non-trivial sizes so nothing is specialised).
    batch, new, past_len = 2, 5 + (more.new_tokens if more else 0), 4 if use_cache else 0
    ids, prompt_mask = token_batch(source.config, batch, new, seed=0, pads=[0, 2], side="left")
    mask = torch.cat([torch.ones(batch, past_len, dtype=torch.long), prompt_mask], dim=1)
    positions = position_ids_from_mask(mask, new)
    past = [torch.from_numpy(a) for a in layout.empty(batch, past_len)] if layout else []
    for tensor in past:
        tensor.normal_()
    extra_tensors: list[torch.Tensor] = []
    if more is not None:
        ids, extra_tensors = more.prepare(ids, prompt_mask)

    token_axes = {0: BATCH_AXIS, 1: SEQUENCE_AXIS}
    auto = torch.export.Dim.AUTO  # torch works out the relations (total = past + new) itself
    extra_names = more.names if more else []
    input_names = ["input_ids", "attention_mask", "position_ids", *extra_names] + (layout.past_names() if layout else [])
    output_names = ["logits"] + (layout.present_names() if layout else [])
    input_axes = {"input_ids": token_axes, "position_ids": token_axes,
                  "attention_mask": {0: BATCH_AXIS, 1: TOTAL_AXIS if layout else SEQUENCE_AXIS}, **(more.axes if more else {})}
    output_axes = {"logits": token_axes}
    if layout:
        input_axes.update({name: {0: BATCH_AXIS, 2: PAST_AXIS} for name in layout.past_names()})
        output_axes.update({name: {0: BATCH_AXIS, 2: TOTAL_AXIS} for name in layout.present_names()})
    dynamic = [{0: auto, 1: auto}] * 3 + [{0: auto}] * len(extra_tensors) + ([tuple({0: auto, 2: auto} for _ in past)] if layout else [])
    path = staging / MODEL_FILE
    export_module(
        step, (ids, mask, positions, *extra_tensors, *past), input_names, output_names, input_axes, output_axes, path,
        exporter=exporter, opset=opset, external_data=external_data, dynamic_shapes=tuple(dynamic),
        edit=add_logits_to_keep,
    )

    with torch.no_grad():
        output_class = qualified_name(type(model(input_ids=ids[:, -1:], return_dict=True, use_cache=False)))  # a text token (never an image placeholder)

    def validate(load: SessionLoader, atol: float, backend: str) -> ValidationReport:
        return validate_decoder(model, load(MAIN_GRAPH), layout, source.config, atol, backend)

    graph = onnx.load(str(path), load_external_data=False)
    extra = {"use_cache": bool(layout), "kv_cache": asdict(layout) if layout else None}
    return ExportedGraphs({MAIN_GRAPH: graph_spec(path.name, graph)}, output_class, validate, extra)


def validate_decoder(
    model: torch.nn.Module, session: Any, layout: KVLayout | None, config: Any, atol: float, backend: str
) -> ValidationReport:
    """First step with an empty cache on a left-padded batch of 3, then one step with the cache."""
    ids, mask = token_batch(config, 3, 7, seed=1, pads=[0, 3, 5], side="left")
    positions = position_ids_from_mask(mask, ids.shape[1])
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
    if layout:
        feed.update(zip(layout.past_names(), layout.empty(3)))
    positions_kw = {"position_ids": positions} if "position_ids" in forward_parameters(type(model)) else {}
    got = session.run({k: v for k, v in feed.items() if k in session.input_names})
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, **positions_kw, use_cache=bool(layout), return_dict=True)
    report = ValidationReport(atol=atol, backend=backend, input_shapes={k: tuple(v.shape) for k, v in feed.items() if not k.startswith("past")})
    real = mask.bool().numpy()  # logits at padding positions are never used
    diff = max_abs_diff(want.logits.numpy()[real], got["logits"][real])
    report.outputs.append(OutputCheck("logits (first step, empty cache)", diff, tuple(want.logits.shape), tuple(got["logits"].shape), diff <= atol))
    if not layout:
        return report

    next_ids, _ = token_batch(config, 3, 1, seed=2)
    mask2 = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
    positions2 = position_ids_from_mask(mask2, 1)
    feed2 = {"input_ids": next_ids.numpy(), "attention_mask": mask2.numpy(), "position_ids": positions2.numpy()}
    feed2.update((name, got[present]) for name, present in zip(layout.past_names(), layout.present_names()))
    got2 = session.run({k: v for k, v in feed2.items() if k in session.input_names})
    positions_kw = {"position_ids": positions2} if positions_kw else {}
    with torch.no_grad():
        want2 = model(input_ids=next_ids, attention_mask=mask2, **positions_kw,
                      **{cache_name(): output_cache(want)}, use_cache=True, return_dict=True)
    diff2 = max_abs_diff(want2.logits.numpy(), got2["logits"])
    report.outputs.append(OutputCheck("logits (next step, with cache)", diff2, tuple(want2.logits.shape), tuple(got2["logits"].shape), diff2 <= atol))
    return report
