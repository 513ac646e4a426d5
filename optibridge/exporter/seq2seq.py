"""Encoder-decoder models (T5, BART, Marian, Whisper, vision encoder-decoder): three graphs in one artifact.

- ``encoder``: ``input_ids``/``attention_mask`` (or Whisper's ``input_features``, or an image
  captioner's ``pixel_values``) → ``last_hidden_state``;
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

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ..encoder_outputs import EncoderOutputWithMask
from ..kv_cache import cache_name, cache_pairs, encoder_decoder_cache, output_cache
from .architectures import forward_parameters
from .encoder import qualified_name
from .image_sizes import ImageSizePlan, confirm_traceable, plan_image_sizes
from .inputs import BATCH_AXIS, token_batch, vision_part
from .loading import SourceModel
from .padded_speech import (ENCODER_MASK, EncoderWithMask, input_axes, padded_inputs, shortened_mask_given, symbolic_conv_lengths,
                            takes_padded_speech)
from .plan import ExportedGraphs, SessionLoader
from .torch_to_onnx import export_module, graph_spec, resolve_exporter
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
    """"input_ids" for text models, "input_features" for speech, "pixel_values" for images."""

    def names(self, prefix: str, with_cross: bool = True) -> list[str]:
        kinds = ("decoder", "encoder") if with_cross else ("decoder",)
        return [f"{prefix}.{i}.{kind}.{part}" for i in range(self.num_layers) for kind in kinds for part in ("key", "value")]


class EncoderStep(torch.nn.Module):
    """The encoder alone. ``input_name`` (default: ``input_features`` when ``speech``, else
    ``input_ids`` with its mask) names the non-text input; ``with_mask``: it comes with an
    ``attention_mask`` (Pix2Struct's patches). ``encoder_kwargs`` are fixed keyword arguments
    (``interpolate_pos_encoding=True`` for an image encoder that takes any size)."""

    def __init__(self, model: torch.nn.Module, speech: bool = False, input_name: str | None = None,
                 encoder_kwargs: dict[str, Any] | None = None, with_mask: bool = False) -> None:
        super().__init__()
        self.encoder = model.get_encoder()  # type: ignore[operator]  # transformers' method; torch types attributes as Tensor | Module
        self.input_name = input_name or ("input_features" if speech else "input_ids")
        self.with_mask = with_mask or self.input_name == "input_ids"
        self.encoder_kwargs = dict(encoder_kwargs or {})
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = {self.input_name: inputs[0], **({"attention_mask": inputs[1]} if self.with_mask else {})}
        hidden: torch.Tensor = self.encoder(**named, **self.encoder_kwargs, return_dict=True).last_hidden_state
        return hidden


def encoder_mask_kwargs(model: torch.nn.Module, mask: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
    """``attention_mask=mask`` for models that take an encoder mask; none for those that do not (an image
    encoder has no padding: VisionEncoderDecoderModel takes no encoder mask at all)."""
    return {"attention_mask": mask} if "attention_mask" in forward_parameters(type(model)) else {}


class DecoderStep(torch.nn.Module):
    """One decoder step; ``with_past`` decides which of the two graphs this traces."""

    def __init__(self, model: torch.nn.Module, with_past: bool, padded_speech: bool = False) -> None:
        super().__init__()
        self.model = model
        self.with_past = with_past
        self.takes_decoder_mask = "decoder_attention_mask" in forward_parameters(type(model))
        self.takes_mask = "attention_mask" in forward_parameters(type(model))  # see encoder_mask_kwargs
        self.padded_speech = padded_speech
        self.eval()

    def forward(self, input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor, encoder_hidden_states: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.with_past:
            self_pairs = list(zip(past[0::4], past[1::4]))
            cross_pairs = list(zip(past[2::4], past[3::4]))
            cache = encoder_decoder_cache(self_pairs, cross_pairs)
        else:
            cache = encoder_decoder_cache([], [])
        extra: dict[str, torch.Tensor] = {}
        if self.takes_mask:
            extra["attention_mask"] = encoder_attention_mask
        if self.takes_decoder_mask:
            # Say the decoder mask explicitly (all ones: the decoder side is never padded). Without it,
            # models that skip building the mask while traced size it one past the keys (BART on
            # transformers 4.57: "size of tensor a (s70) must match … (s70 + 1)").
            past_len = past[0].shape[2] if self.with_past else 0
            extra["decoder_attention_mask"] = torch.ones(input_ids.shape[0], past_len + input_ids.shape[1], dtype=torch.long, device=input_ids.device)
        encoder_outputs: Any = (encoder_hidden_states,)
        if self.padded_speech:  # the mask at the encoder's length, as the encoder graph gives it (see padded_speech)
            encoder_outputs = EncoderOutputWithMask(last_hidden_state=encoder_hidden_states, attention_mask=encoder_attention_mask)
        with shortened_mask_given(self.model) if self.padded_speech else contextlib.nullcontext():
            out = self.model(
                encoder_outputs=encoder_outputs, decoder_input_ids=input_ids,
                **{cache_name(): cache}, **extra, use_cache=True, return_dict=True,
            )
        self_pairs = cache_pairs(output_cache(out).self_attention_cache)
        if self.with_past:
            return (out.logits, *[t for pair in self_pairs for t in pair])
        cross_pairs = cache_pairs(output_cache(out).cross_attention_cache)
        flat = [t for s, c in zip(self_pairs, cross_pairs) for t in (*s, *c)]
        return (out.logits, *flat)


def _features(config: Any, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frames = 2 * int(config.max_source_positions)  # Whisper's encoder takes exactly this many frames
    return torch.randn(batch, int(config.num_mel_bins), frames, generator=generator)


@dataclass
class EncoderSide:
    """What differs between text, speech and image encoders: the input, its axes, how to call it."""

    source: SourceModel
    image_plan: ImageSizePlan | None = None
    padded_speech: bool = False
    """Padded audio or features with a mask, shortened by the encoder (Moonshine, Speech2Text; not Whisper)."""

    @property
    def modality(self) -> str:
        return self.source.architecture.modality

    @property
    def input_names(self) -> list[str]:
        if self.padded_speech:
            return ["input_values" if self.modality == "audio" else "input_features", "attention_mask"]
        return {"speech": ["input_features"], "vision": ["pixel_values"],
                "patches": ["flattened_patches", "attention_mask"]}.get(self.modality, ["input_ids", "attention_mask"])

    @property
    def call_kwargs(self) -> dict[str, Any]:
        return dict(self.image_plan.call_kwargs) if self.image_plan else {}

    def inputs(self, batch: int, length: int, pads: list[int], seed: int, validation: bool = False) -> tuple[torch.Tensor, ...]:
        if self.padded_speech:
            return padded_inputs(self.modality, self.source.config, batch, length, pads, seed)
        if self.modality == "speech":
            return (_features(self.source.config, batch, seed),)
        if self.modality == "vision":
            assert self.image_plan is not None
            size = self.image_plan.validated if validation else self.image_plan.traced
            generator = torch.Generator().manual_seed(seed)
            return (torch.randn(batch, _channels(self.source.config), *size, generator=generator),)
        if self.modality == "patches":
            return _patches(self.source.config, batch, length, pads, seed)
        return token_batch(self.source.config, batch, length, seed, pads=pads)  # encoders are right-padded

    def run(self, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The PyTorch encoder's states and the attention mask the decoder gets with them: the text mask, padded
        speech's shortened to the encoder's length (one encoder call gives both), else all ones."""
        with torch.no_grad():
            if self.padded_speech:
                hidden, shortened = EncoderWithMask(self.source.model, self.input_names[0])(*inputs)
                return hidden, shortened
            out = self.source.model.get_encoder()(**dict(zip(self.input_names, inputs)), **self.call_kwargs)
        hidden = out.last_hidden_state
        return hidden, inputs[1] if len(inputs) > 1 else torch.ones(hidden.shape[:2], dtype=torch.long)

    def axes(self) -> dict[int, str]:
        if self.padded_speech:
            return input_axes(self.modality)
        if self.modality == "speech":
            return {0: BATCH_AXIS}
        if self.modality == "vision":
            assert self.image_plan is not None
            return self.image_plan.axes(BATCH_AXIS)
        return {0: BATCH_AXIS, 1: ENCODER_AXIS}

    def output_axes(self) -> dict[int, str]:
        fixed_image = self.image_plan is not None and not self.image_plan.dynamic
        fixed_length = (self.modality == "speech" and not self.padded_speech) or (self.modality == "vision" and fixed_image)
        return {0: BATCH_AXIS} if fixed_length else {0: BATCH_AXIS, 1: ENCODER_AXIS}


def _patches(config: Any, batch: int, length: int, pads: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pix2Struct's encoder input: ``length`` patches per image, each its (row, column) position (from 1)
    and its pixels, the last ``pads[i]`` rows padding (zeros, mask 0), as its image processor lays them out."""
    generator = torch.Generator().manual_seed(seed)
    width = int(_image_config(config).patch_embed_hidden_size)
    columns = max(1, int(length**0.5))
    patches = torch.randn(batch, length, width + 2, generator=generator)
    positions = torch.arange(length)
    patches[..., 0], patches[..., 1] = (positions // columns + 1).float(), (positions % columns + 1).float()
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, pad in enumerate(pads[:batch]):
        if pad:
            patches[row, length - pad:] = 0
            mask[row, length - pad:] = 0
    return patches, mask


def _channels(config: Any) -> int:
    return int(getattr(_image_config(config), "num_channels", 3))


def _image_config(config: Any) -> Any:
    """The config that holds the image size: the encoder's of a vision encoder-decoder."""
    return getattr(config, "encoder", None) or vision_part(config)


def encoder_side(source: SourceModel) -> EncoderSide:
    if source.architecture.modality in ("speech", "audio"):
        return EncoderSide(source, padded_speech=takes_padded_speech(source.model, source.architecture.modality, source.config))
    if source.architecture.modality != "vision":
        return EncoderSide(source)
    encoder = source.model.get_encoder()
    takes = forward_parameters(type(encoder))
    channels = _channels(source.config)
    plan = plan_image_sizes(lambda pixels, kw: encoder(pixel_values=pixels, **kw), _image_config(source.config), takes, channels)
    auto = torch.export.Dim.AUTO
    plan = confirm_traceable(
        plan, EncoderStep(source.model, input_name="pixel_values", encoder_kwargs=plan.call_kwargs),
        lambda size, traced: (torch.randn(2 if traced else 3, channels, *size, generator=torch.Generator().manual_seed(0)),), "dynamo",
        ((({0: auto, 2: auto, 3: auto}),),),
    )
    return EncoderSide(source, plan)


def _encoder_exporter(opset: int | None) -> tuple[str, int | None]:
    """TorchScript for the encoder graph where torch still ships it and it writes the opset the decoder
    graphs get (the dynamo default unless the caller chose one), so that all three graphs share it."""
    from torch.onnx import _constants

    wanted = opset if opset is not None else _constants.ONNX_DEFAULT_OPSET
    if resolve_exporter("auto") == "torchscript" and wanted <= _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET:
        return "torchscript", wanted
    return "dynamo", opset


def export_seq2seq(source: SourceModel, staging: Path, *, opset: int | None, external_data: bool, use_cache: bool = True,
                   exporter: str = "dynamo") -> ExportedGraphs:
    """``exporter="torchscript"``: the decoder graphs through the fast path's traced steps (fast_path.py)."""
    from ..errors import OptibridgeError

    if not use_cache:
        raise OptibridgeError("encoder-decoder models are exported with their KV cache; use_cache=False is for decoder-only LMs")
    model = source.model
    side = encoder_side(source)
    auto = torch.export.Dim.AUTO

    # -- encoder --------------------------------------------------------------------------------
    enc_inputs = side.inputs(2, 6, [0, 2], seed=0)
    hidden, enc_mask = side.run(enc_inputs)
    encoder_inputs = side.input_names
    enc_axes = side.axes()
    # A text or speech encoder has no cache: the TorchScript exporter handles it (validated like every
    # graph) in a fraction of a dynamo trace, which was a third of a T5 export's time. Image encoders
    # keep dynamo: their dynamic height/width were planned and confirmed with it.
    # Waveform encoders too (Moonshine): TorchScript's export of their mask slicing fails ("same rank").
    encoder_exporter, encoder_opset = ("dynamo", opset) if side.modality in ("vision", "audio") else _encoder_exporter(opset)
    encoder_step: torch.nn.Module = EncoderStep(model, input_name=encoder_inputs[0], encoder_kwargs=side.call_kwargs,
                                                with_mask=len(encoder_inputs) > 1)
    encoder_outputs, encoder_output_axes = ["last_hidden_state"], {"last_hidden_state": side.output_axes()}
    if side.padded_speech:  # the encoder also gives the mask at its output length (see padded_speech)
        encoder_step = EncoderWithMask(model, encoder_inputs[0])
        encoder_outputs.append(ENCODER_MASK)
        encoder_output_axes[ENCODER_MASK] = side.output_axes()
    input_shapes = tuple({axis: auto for axis in enc_axes} for _ in encoder_inputs)
    with symbolic_conv_lengths(model) if side.padded_speech else contextlib.nullcontext():
        export_module(
            encoder_step, enc_inputs, encoder_inputs, encoder_outputs, {name: enc_axes for name in encoder_inputs}, encoder_output_axes,
            staging / "encoder.onnx", exporter=encoder_exporter, opset=encoder_opset, external_data=external_data,
            # EncoderStep takes *inputs (one tuple of specs); EncoderWithMask its two arguments by name
            dynamic_shapes=(input_shapes if side.padded_speech else (input_shapes,)),
        )

    # -- first decoder step -----------------------------------------------------------------------
    decoder_opset = encoder_opset if exporter == "torchscript" else opset
    dec_ids = token_batch(source.config, 2, 3, seed=0)[0]
    with torch.no_grad():
        first = DecoderStep(model, with_past=False, padded_speech=side.padded_speech)(dec_ids, enc_mask, hidden)
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
        DecoderStep(model, with_past=False, padded_speech=side.padded_speech), (dec_ids, enc_mask, hidden), decoder_inputs, ["logits", *self_cross_out],
        common_in, first_out_axes, staging / "decoder.onnx", exporter=exporter, opset=decoder_opset, external_data=external_data,
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
        DecoderStep(model, with_past=True, padded_speech=side.padded_speech), (next_ids, enc_mask, hidden, *past), decoder_inputs + past_names,
        ["logits", *present_names], {**common_in, **past_axes}, later_out_axes, staging / "decoder_with_past.onnx",
        exporter=exporter, opset=decoder_opset, external_data=external_data,
        dynamic_shapes=({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto}, tuple({0: auto, 2: auto} for _ in past)),
    )

    graphs = {}
    for name in ("encoder", "decoder", "decoder_with_past"):
        graphs[name] = graph_spec(f"{name}.onnx", onnx.load(str(staging / f"{name}.onnx"), load_external_data=False))
    mask_kw = encoder_mask_kwargs(model, enc_mask)
    with torch.no_grad():
        output_class = qualified_name(type(model(encoder_outputs=(hidden,), **mask_kw, decoder_input_ids=dec_ids, return_dict=True)
                                           if not side.padded_speech else model(**dict(zip(encoder_inputs, enc_inputs)),
                                                                                decoder_input_ids=dec_ids, return_dict=True)))

    def validate(load: SessionLoader, atol: float, backend: str) -> ValidationReport:
        return validate_seq2seq(side, load, layout, atol, backend)

    extra: dict[str, Any] = {"kv_cache": asdict(layout), "use_cache": True, "encoder_exporter": encoder_exporter,
                             "decoder_start_token_id": getattr(source.config, "decoder_start_token_id", None)}
    if side.image_plan is not None:
        extra["image_size"] = side.image_plan.record()
    return ExportedGraphs(graphs, output_class, validate, extra)


def validate_seq2seq(side: EncoderSide, load: SessionLoader, layout: Seq2SeqLayout, atol: float, backend: str) -> ValidationReport:
    """Encoder on a (right-padded) batch of 3, at another image size where the graph takes any, the
    first decoder step, then one step with both caches."""
    source = side.source
    model = source.model
    enc_inputs = side.inputs(3, 9, [0, 3, 5], seed=2, validation=True)
    feed = {name: tensor.numpy() for name, tensor in zip(side.input_names, enc_inputs)}
    report = ValidationReport(atol=atol, backend=backend, input_shapes={k: tuple(v.shape) for k, v in feed.items()})

    def check(name: str, want: np.ndarray, got: np.ndarray, where: np.ndarray | None = None) -> None:
        diff = max_abs_diff(want[where] if where is not None else want, got[where] if where is not None else got)
        report.outputs.append(OutputCheck(name, diff, tuple(want.shape), tuple(got.shape), diff <= atol))

    sessions = {name: load(name) for name in ("encoder", "decoder", "decoder_with_past")}

    def run(graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # dynamo drops inputs a graph does not use (the later step's encoder_hidden_states, often)
        session = sessions[graph]
        return session.run({k: v for k, v in inputs.items() if k in session.input_names})

    encoded = run("encoder", feed)
    hidden = encoded["last_hidden_state"]
    want_hidden, enc_mask = side.run(enc_inputs)
    padded = len(enc_inputs) > 1  # text, padded speech: compare real positions only
    check("encoder last_hidden_state", want_hidden.numpy(), hidden, enc_mask.bool().numpy() if padded else None)
    if side.padded_speech:
        check(f"encoder {ENCODER_MASK}", enc_mask.numpy(), encoded[ENCODER_MASK])
        return _validate_padded_speech_decoder(side, run, layout, report, check, enc_inputs, encoded)

    mask_kw = encoder_mask_kwargs(model, enc_mask)
    dec_ids = token_batch(source.config, 3, 2, seed=3)[0]
    first_feed = {"input_ids": dec_ids.numpy(), "encoder_attention_mask": enc_mask.numpy(), "encoder_hidden_states": hidden}
    first = run("decoder", first_feed)
    hidden_t = torch.from_numpy(hidden)
    with torch.no_grad():
        want1 = model(encoder_outputs=(hidden_t,), **mask_kw, decoder_input_ids=dec_ids,
                      **{cache_name(): encoder_decoder_cache([], [])}, use_cache=True, return_dict=True)
    check("logits (first decoder step)", want1.logits.numpy(), first["logits"])

    next_ids = token_batch(source.config, 3, 1, seed=4)[0]
    later_feed = {"input_ids": next_ids.numpy(), "encoder_attention_mask": enc_mask.numpy(), "encoder_hidden_states": hidden}
    later_feed.update(zip(layout.names("past_key_values"), (first[n] for n in layout.names("present"))))
    later = run("decoder_with_past", later_feed)
    with torch.no_grad():
        want2 = model(encoder_outputs=(hidden_t,), **mask_kw, decoder_input_ids=next_ids,
                      **{cache_name(): output_cache(want1)}, use_cache=True, return_dict=True)
    check("logits (next decoder step, with cache)", want2.logits.numpy(), later["logits"])
    return report


def _validate_padded_speech_decoder(side: EncoderSide, run: Any, layout: Seq2SeqLayout, report: ValidationReport, check: Any,
                                    enc_inputs: tuple[torch.Tensor, ...], encoded: dict[str, np.ndarray]) -> ValidationReport:
    """Both decoder graphs, fed by the encoder graph, against the PyTorch model called end to end on the padded audio."""
    model = side.source.model
    audio = dict(zip(side.input_names, enc_inputs))
    dec_ids = token_batch(side.source.config, 3, 2, seed=3)[0]
    common = {"encoder_attention_mask": encoded[ENCODER_MASK], "encoder_hidden_states": encoded["last_hidden_state"]}
    first = run("decoder", {"input_ids": dec_ids.numpy(), **common})
    with torch.no_grad():
        want1 = model(**audio, decoder_input_ids=dec_ids, **{cache_name(): encoder_decoder_cache([], [])}, use_cache=True, return_dict=True)
    check("logits (first decoder step)", want1.logits.numpy(), first["logits"])
    next_ids = token_batch(side.source.config, 3, 1, seed=4)[0]
    later_feed = {"input_ids": next_ids.numpy(), **common}
    later_feed.update(zip(layout.names("past_key_values"), (first[n] for n in layout.names("present"))))
    later = run("decoder_with_past", later_feed)
    with torch.no_grad():
        want2 = model(**audio, decoder_input_ids=next_ids, **{cache_name(): output_cache(want1)}, use_cache=True, return_dict=True)
    check("logits (next decoder step, with cache)", want2.logits.numpy(), later["logits"])
    return report
