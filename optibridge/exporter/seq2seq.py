"""Encoder-decoder models (T5, BART, Marian, Whisper): three graphs in one artifact.

- ``encoder``: ``input_ids``/``attention_mask`` (or Whisper's ``input_features``) → ``last_hidden_state``;
- ``decoder``: the first step — decoder ``input_ids`` with the encoder's states → ``logits``, the
  self-attention cache and the cross-attention keys/values (computed once, here);
- ``decoder_with_past``: every later step — new tokens with both caches → ``logits`` and the grown
  self-attention cache.

Two decoder graphs rather than one: the cross-attention keys/values are computed only at the
first step, and a single graph would have to recompute them at every step (for Whisper's 1500
encoder frames that is most of the decoder's work) or carry an If node that some runtimes
handle poorly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ..kv_cache import cache_name, cache_pairs, encoder_decoder_cache, output_cache
from .encoder import qualified_name
from .inputs import BATCH_AXIS, token_batch
from .loading import SourceModel
from .plan import ExportedGraphs, SessionLoader
from .torch_to_onnx import export_module, graph_spec
from .validate import OutputCheck, ValidationReport, max_abs_diff

ENCODER_AXIS = "encoder_sequence_length"
DECODER_AXIS = "decoder_sequence_length"
PAST_AXIS = "past_decoder_sequence_length"
TOTAL_AXIS = "total_decoder_sequence_length"


@dataclass(frozen=True)
class Seq2SeqLayout:
    num_layers: int
    num_heads: int
    head_dim: int
    encoder_input: str
    """"input_ids" for text models, "input_features" for speech."""

    def names(self, prefix: str, with_cross: bool = True) -> list[str]:
        kinds = ("decoder", "encoder") if with_cross else ("decoder",)
        return [f"{prefix}.{i}.{kind}.{part}" for i in range(self.num_layers) for kind in kinds for part in ("key", "value")]


class EncoderStep(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, speech: bool) -> None:
        super().__init__()
        self.encoder = model.get_encoder()  # type: ignore[operator]  # transformers' method; torch types attributes as Tensor | Module
        self.speech = speech
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor  # transformers' outputs reach mypy untyped (Module.__call__ returns Any)
        if self.speech:
            hidden = self.encoder(input_features=inputs[0], return_dict=True).last_hidden_state
            return hidden
        hidden = self.encoder(input_ids=inputs[0], attention_mask=inputs[1], return_dict=True).last_hidden_state
        return hidden


class DecoderStep(torch.nn.Module):
    """One decoder step; ``with_past`` decides which of the two graphs this traces."""

    def __init__(self, model: torch.nn.Module, with_past: bool) -> None:
        super().__init__()
        self.model = model
        self.with_past = with_past
        self.eval()

    def forward(self, input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor, encoder_hidden_states: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.with_past:
            self_pairs = list(zip(past[0::4], past[1::4]))
            cross_pairs = list(zip(past[2::4], past[3::4]))
            cache = encoder_decoder_cache(self_pairs, cross_pairs)
        else:
            cache = encoder_decoder_cache([], [])
        out = self.model(
            encoder_outputs=(encoder_hidden_states,), attention_mask=encoder_attention_mask, decoder_input_ids=input_ids,
            **{cache_name(): cache}, use_cache=True, return_dict=True,
        )
        self_pairs = cache_pairs(output_cache(out).self_attention_cache)
        if self.with_past:
            return (out.logits, *[t for pair in self_pairs for t in pair])
        cross_pairs = cache_pairs(output_cache(out).cross_attention_cache)
        flat = [t for s, c in zip(self_pairs, cross_pairs) for t in (*s, *c)]
        return (out.logits, *flat)


def _features(config: Any, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    frames = 2 * int(config.max_source_positions)  # Whisper's encoder takes exactly this many frames
    features = torch.randn(batch, int(config.num_mel_bins), frames, generator=generator)
    return features, torch.ones(batch, int(config.max_source_positions), dtype=torch.long)


def _encoder_inputs(source: SourceModel, batch: int, length: int, pads: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if source.architecture.modality == "speech":
        return _features(source.config, batch, seed)
    return token_batch(source.config, batch, length, seed, pads=pads)  # encoders are right-padded


def export_seq2seq(source: SourceModel, staging: Path, *, opset: int | None, external_data: bool, use_cache: bool = True) -> ExportedGraphs:
    from ..errors import OptibridgeError

    if not use_cache:
        raise OptibridgeError("encoder-decoder models are exported with their KV cache; use_cache=False is for decoder-only LMs")
    model = source.model
    speech = source.architecture.modality == "speech"
    auto = torch.export.Dim.AUTO

    # -- encoder --------------------------------------------------------------------------------
    enc_in, enc_mask = _encoder_inputs(source, 2, 6, [0, 2], seed=0)
    with torch.no_grad():
        hidden = model.get_encoder()(**({"input_features": enc_in} if speech else {"input_ids": enc_in, "attention_mask": enc_mask})).last_hidden_state
    enc_axes = {0: BATCH_AXIS} if speech else {0: BATCH_AXIS, 1: ENCODER_AXIS}
    encoder_inputs = ["input_features"] if speech else ["input_ids", "attention_mask"]
    export_module(
        EncoderStep(model, speech), (enc_in,) if speech else (enc_in, enc_mask), encoder_inputs, ["last_hidden_state"],
        {name: enc_axes for name in encoder_inputs}, {"last_hidden_state": enc_axes}, staging / "encoder.onnx",
        exporter="dynamo", opset=opset, external_data=external_data,
        dynamic_shapes=(tuple({0: auto} if speech else {0: auto, 1: auto} for _ in encoder_inputs),),
    )

    # -- first decoder step -----------------------------------------------------------------------
    dec_ids = token_batch(source.config, 2, 3, seed=0)[0]
    with torch.no_grad():
        first = DecoderStep(model, with_past=False)(dec_ids, enc_mask, hidden)
    layer_count = (len(first) - 1) // 4
    key = first[1]
    layout = Seq2SeqLayout(layer_count, int(key.shape[1]), int(key.shape[3]), encoder_inputs[0])
    self_cross_out = layout.names("present")
    cross_axes = {0: BATCH_AXIS, 2: ENCODER_AXIS}
    common_in = {"input_ids": {0: BATCH_AXIS, 1: DECODER_AXIS}, "encoder_attention_mask": {0: BATCH_AXIS, 1: ENCODER_AXIS},
                 "encoder_hidden_states": {0: BATCH_AXIS, 1: ENCODER_AXIS}}
    first_out_axes = {"logits": {0: BATCH_AXIS, 1: DECODER_AXIS}}
    first_out_axes.update({n: ({0: BATCH_AXIS, 2: DECODER_AXIS} if ".decoder." in n else cross_axes) for n in self_cross_out})
    decoder_inputs = ["input_ids", "encoder_attention_mask", "encoder_hidden_states"]
    export_module(
        DecoderStep(model, with_past=False), (dec_ids, enc_mask, hidden), decoder_inputs, ["logits", *self_cross_out],
        common_in, first_out_axes, staging / "decoder.onnx", exporter="dynamo", opset=opset, external_data=external_data,
        dynamic_shapes=({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto}),
    )

    # -- later decoder steps ------------------------------------------------------------------------
    next_ids = token_batch(source.config, 2, 2, seed=1)[0]
    past = list(first[1:])
    past_names = layout.names("past_key_values")
    present_names = layout.names("present", with_cross=False)
    past_axes = {n: ({0: BATCH_AXIS, 2: PAST_AXIS} if ".decoder." in n else cross_axes) for n in past_names}
    later_out_axes = {"logits": {0: BATCH_AXIS, 1: DECODER_AXIS}}
    later_out_axes.update({n: {0: BATCH_AXIS, 2: TOTAL_AXIS} for n in present_names})
    export_module(
        DecoderStep(model, with_past=True), (next_ids, enc_mask, hidden, *past), decoder_inputs + past_names,
        ["logits", *present_names], {**common_in, **past_axes}, later_out_axes, staging / "decoder_with_past.onnx",
        exporter="dynamo", opset=opset, external_data=external_data,
        dynamic_shapes=({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto}, tuple({0: auto, 2: auto} for _ in past)),
    )

    graphs = {}
    for name in ("encoder", "decoder", "decoder_with_past"):
        graphs[name] = graph_spec(f"{name}.onnx", onnx.load(str(staging / f"{name}.onnx"), load_external_data=False))
    with torch.no_grad():
        output_class = qualified_name(type(model(encoder_outputs=(hidden,), attention_mask=enc_mask, decoder_input_ids=dec_ids, return_dict=True)))

    def validate(load: SessionLoader, atol: float, backend: str) -> ValidationReport:
        return validate_seq2seq(source, load, layout, atol, backend)

    extra = {"kv_cache": asdict(layout), "use_cache": True,
             "decoder_start_token_id": getattr(source.config, "decoder_start_token_id", None)}
    return ExportedGraphs(graphs, output_class, validate, extra)


def validate_seq2seq(source: SourceModel, load: SessionLoader, layout: Seq2SeqLayout, atol: float, backend: str) -> ValidationReport:
    """Encoder on a right-padded batch of 3, the first decoder step, then one step with both caches."""
    model = source.model
    speech = source.architecture.modality == "speech"
    enc_in, enc_mask = _encoder_inputs(source, 3, 9, [0, 3, 5], seed=2)
    feed = {"input_features": enc_in.numpy()} if speech else {"input_ids": enc_in.numpy(), "attention_mask": enc_mask.numpy()}
    report = ValidationReport(atol=atol, backend=backend, input_shapes={k: tuple(v.shape) for k, v in feed.items()})

    def check(name: str, want: np.ndarray, got: np.ndarray, where: np.ndarray | None = None) -> None:
        diff = max_abs_diff(want[where] if where is not None else want, got[where] if where is not None else got)
        report.outputs.append(OutputCheck(name, diff, tuple(want.shape), tuple(got.shape), diff <= atol))

    sessions = {name: load(name) for name in ("encoder", "decoder", "decoder_with_past")}

    def run(graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # dynamo drops inputs a graph does not use (the later step's encoder_hidden_states, often)
        session = sessions[graph]
        return session.run({k: v for k, v in inputs.items() if k in session.input_names})

    hidden = run("encoder", feed)["last_hidden_state"]
    with torch.no_grad():
        want_hidden = model.get_encoder()(**({"input_features": enc_in} if speech else {"input_ids": enc_in, "attention_mask": enc_mask})).last_hidden_state
    check("encoder last_hidden_state", want_hidden.numpy(), hidden, None if speech else enc_mask.bool().numpy())

    dec_ids = token_batch(source.config, 3, 2, seed=3)[0]
    first_feed = {"input_ids": dec_ids.numpy(), "encoder_attention_mask": enc_mask.numpy(), "encoder_hidden_states": hidden}
    first = run("decoder", first_feed)
    hidden_t = torch.from_numpy(hidden)
    with torch.no_grad():
        want1 = model(encoder_outputs=(hidden_t,), attention_mask=enc_mask, decoder_input_ids=dec_ids,
                      **{cache_name(): encoder_decoder_cache([], [])}, use_cache=True, return_dict=True)
    check("logits (first decoder step)", want1.logits.numpy(), first["logits"])

    next_ids = token_batch(source.config, 3, 1, seed=4)[0]
    later_feed = {"input_ids": next_ids.numpy(), "encoder_attention_mask": enc_mask.numpy(), "encoder_hidden_states": hidden}
    later_feed.update(zip(layout.names("past_key_values"), (first[n] for n in layout.names("present"))))
    later = run("decoder_with_past", later_feed)
    with torch.no_grad():
        want2 = model(encoder_outputs=(hidden_t,), attention_mask=enc_mask, decoder_input_ids=next_ids,
                      **{cache_name(): output_cache(want1)}, use_cache=True, return_dict=True)
    check("logits (next decoder step, with cache)", want2.logits.numpy(), later["logits"])
    return report
