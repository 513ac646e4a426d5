"""Dummy inputs for tracing and for validation, built from the model's config.

Tracing and validation use different, distinctive sizes on every dynamic axis so that (a) the
exported graph is proven to run at shapes other than the traced ones and (b) each output axis
can be named by which input axis it follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UnsupportedModelError
from ..tasks import Task

BATCH_AXIS = "batch_size"
SEQUENCE_AXIS = "sequence_length"
CHOICES_AXIS = "num_choices"
TEXT_BATCH_AXIS = "text_batch_size"
IMAGE_BATCH_AXIS = "image_batch_size"
# Multimodal inputs: images take the batch sizes, texts the choices sizes (so both differ everywhere).
MULTIMODAL_AXES = {BATCH_AXIS: IMAGE_BATCH_AXIS, CHOICES_AXIS: TEXT_BATCH_AXIS}
# Waveform samples per sequence step: the traced and validated lengths (17 and 9 steps) then span
# several frames of wav2vec2-style feature encoders (a 400-sample receptive field, stride 320).
SAMPLES_PER_STEP = 400


# Feature frames per sequence step of an encoder taking log-mel features (CTC on parakeet-style
# encoders): 8, their subsampling factor, so the traced and validated lengths give 17 and 9 frames out.
FRAMES_PER_STEP = 8


def mel_bins(config: Any) -> int:
    """Values per feature frame (mel bins), from the config or the sub-config that has them (ParakeetCTCConfig's encoder)."""
    for candidate in (config, *(getattr(config, name, None) for name in getattr(config, "sub_configs", {}) or {})):
        per_channel = getattr(candidate, "input_feat_per_channel", None)  # Speech2Text: bins × channels per frame
        if isinstance(per_channel, int) and per_channel > 0:
            return per_channel * int(getattr(candidate, "input_channels", 1))
        bins = getattr(candidate, "num_mel_bins", None) or getattr(candidate, "feature_size", None)
        if isinstance(bins, int) and bins > 0:
            return bins
    raise UnsupportedModelError("the config gives no mel bin count (num_mel_bins or feature_size) for the input_features to trace with")


def samples_per_step(task: Task, config: Any) -> int:
    """Waveform samples per sequence step. An x-vector head's TDNN layers need a minimum number of frames
    (1 + sum of (kernel - 1) * dilation: 15 with wav2vec2's defaults, ~0.3 s of 16 kHz audio), so its
    steps grow until the half-padded row of the shorter, validation-length input still reaches it."""
    if task.name != "audio-xvector":
        return SAMPLES_PER_STEP
    frames = 1 + sum((int(k) - 1) * int(d) for k, d in zip(getattr(config, "tdnn_kernel", ()), getattr(config, "tdnn_dilation", ())))
    strides = [int(s) for s in getattr(config, "conv_stride", ())] or [1]
    kernels = [int(k) for k in getattr(config, "conv_kernel", ())] or [1]
    receptive, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        receptive, jump = receptive + (kernel - 1) * jump, jump * stride
    minimum = (frames - 1) * jump + receptive  # samples that give ``frames`` frames
    return max(SAMPLES_PER_STEP, -(-3 * minimum // VALIDATION_SHAPES.sequence))  # the padded row has half, with a margin


@dataclass(frozen=True)
class Shapes:
    batch: int
    sequence: int
    choices: int
    image: tuple[int, int] | None = None
    """(height, width) of images; None: the config's image size."""

    def axis_sizes(self) -> dict[str, int]:
        return {BATCH_AXIS: self.batch, SEQUENCE_AXIS: self.sequence, CHOICES_AXIS: self.choices}


# Every value differs between the two, and within each no two axes share a size.
TRACE_SHAPES = Shapes(batch=2, sequence=17, choices=3)
VALIDATION_SHAPES = Shapes(batch=4, sequence=9, choices=2)


def input_axes(task: Task, modality: str, name: str = "") -> dict[int, str]:
    """Dynamic axes of an input of a task (the same for all its inputs but in multimodal graphs)."""
    if modality == "multimodal":  # as many texts as images, or not: two batch axes
        return {0: IMAGE_BATCH_AXIS} if name == "pixel_values" else {0: TEXT_BATCH_AXIS, 1: SEQUENCE_AXIS}
    if modality == "vision":
        return {0: BATCH_AXIS}
    if task.choices_axis:
        return {0: BATCH_AXIS, 1: CHOICES_AXIS, 2: SEQUENCE_AXIS}
    return {0: BATCH_AXIS, 1: SEQUENCE_AXIS}


def vision_part(config: Any) -> Any:
    """The config that holds the image size and channels: ``vision_config`` where there is one (CLIP, SigLIP and their
    classifiers), else the config itself."""
    return getattr(config, "vision_config", None) or config


def image_size(config: Any) -> tuple[int, int]:
    size = getattr(config, "image_size", 224)
    if isinstance(size, dict):
        height, width = size.get("height", size.get("shortest_edge")), size.get("width", size.get("shortest_edge"))
        if height is None or width is None:
            raise UnsupportedModelError(f"config.image_size {size} gives no height and width (or shortest_edge); "
                                        "set image_size in config.json to an int or {\"height\": H, \"width\": W}")
        return int(height), int(width)
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def make_inputs(
    task: Task, modality: str, config: Any, input_names: tuple[str, ...], shapes: Shapes, seed: int
) -> dict[str, torch.Tensor]:
    """Random but valid inputs: token ids inside the vocabulary, a padded first row, both token types."""
    generator = torch.Generator().manual_seed(seed)
    if modality == "multimodal":
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        texts = make_inputs(task, "text", text_config, ("input_ids", "attention_mask"), Shapes(shapes.choices, shapes.sequence, 1), seed)
        images = make_inputs(task, "vision", config, ("pixel_values",), shapes, seed)
        return {name: {**texts, **images}[name] for name in input_names}
    if modality == "vision":
        config = vision_part(config)
        height, width = shapes.image or image_size(config)
        channels = getattr(config, "num_channels", 3)
        return {"pixel_values": torch.randn(shapes.batch, channels, height, width, generator=generator)}

    if modality == "speech":  # log-mel features, frames first as parakeet's extractor gives them, and a frame mask
        frames = shapes.sequence * FRAMES_PER_STEP
        features = torch.randn(shapes.batch, frames, mel_bins(config), generator=generator)
        frame_mask = torch.ones(shapes.batch, frames, dtype=torch.int64)
        frame_mask[0, frames // 2:] = 0  # a padded first row, zero features after its end as extractors pad
        features[0, frames // 2:] = 0
        speech = {"input_features": features, "attention_mask": frame_mask}
        return {name: speech[name] for name in input_names}

    if modality == "audio":  # a raw waveform: SAMPLES_PER_STEP samples per "sequence" step
        samples = shapes.sequence * samples_per_step(task, config)
        values = torch.randn(shapes.batch, samples, generator=generator)
        mask = torch.ones(shapes.batch, samples, dtype=torch.int64)
        mask[0, samples // 2:] = 0  # a padded first row, zeros after its end as feature extractors pad
        values[0, samples // 2:] = 0
        audio = {"input_values": values, "attention_mask": mask}
        return {name: audio[name] for name in input_names}

    lead = (shapes.batch, shapes.choices) if task.choices_axis else (shapes.batch,)
    shape = lead + (shapes.sequence,)
    vocab = int(config.vocab_size)
    low = min(5, vocab - 1)  # skip the first ids, where special tokens usually live
    input_ids = torch.randint(low, vocab, shape, generator=generator)
    attention_mask = torch.ones(shape, dtype=torch.int64)
    # Right-pad the first example to about half length so masking is exercised.
    keep = shapes.sequence // 2 + 1
    attention_mask[0, ..., keep:] = 0
    pad_id = getattr(config, "pad_token_id", None)
    if pad_id is not None and 0 <= pad_id < vocab:
        input_ids[0, ..., keep:] = pad_id
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in input_names:
        token_type_ids = torch.zeros(shape, dtype=torch.int64)
        if getattr(config, "type_vocab_size", 1) > 1:
            token_type_ids[..., shapes.sequence // 2 :] = 1
        inputs["token_type_ids"] = token_type_ids
    return {name: inputs[name] for name in input_names}


def token_batch(
    config: Any, batch: int, length: int, seed: int, pads: list[int] | None = None, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded token ids inside the vocabulary (skipping the first ids, where special tokens live)
    and an attention mask with ``pads[i]`` padding positions in row i, on ``side``."""
    generator = torch.Generator().manual_seed(seed)
    vocab = int(config.get_text_config().vocab_size)
    ids = torch.randint(min(3, vocab - 1), vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, n in enumerate(pads or []):
        if n == 0:
            continue
        if side == "left":
            mask[row, :n] = 0
        else:
            mask[row, -n:] = 0
    return ids, mask


def output_axes(traced: dict[str, tuple[int, ...]], validated: dict[str, tuple[int, ...]]) -> dict[str, dict[int, str]]:
    """Name each output axis whose size changed between the two runs after the input axis it follows."""
    by_sizes = {
        (TRACE_SHAPES.axis_sizes()[name], VALIDATION_SHAPES.axis_sizes()[name]): name
        for name in (BATCH_AXIS, SEQUENCE_AXIS, CHOICES_AXIS)
    }
    axes: dict[str, dict[int, str]] = {}
    for output, shape in traced.items():
        other = validated[output]
        named = {}
        for i, (a, b) in enumerate(zip(shape, other)):
            if a != b:
                named[i] = by_sizes.get((a, b), f"{output}_dim_{i}")
        axes[output] = named
    return axes
