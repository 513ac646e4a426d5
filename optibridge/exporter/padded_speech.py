"""Speech encoders that take a padded batch with its mask and shorten it (Moonshine's waveform
convolutions, Speech2Text's frame subsampler), for ``automatic-speech-recognition``.

Whisper's encoder takes a fixed 30-second window and no mask; these take any length, and the decoder's
cross-attention must skip the encoder frames that came from padding. The mask at the encoder's output
length is computed by the model from the input mask (Moonshine's encoder returns it; Speech2Text's
forward derives it with ``_get_feature_vector_attention_mask``), so the encoder graph returns it too, as
``encoder_attention_mask``, and the decoder graphs take it as they take a text encoder's mask. For the
decoder's trace the model is handed that shortened mask as it stands (:func:`shortened_mask_given`);
validation calls the model on the padded audio itself, end to end.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from ..encoder_outputs import ENCODER_MASK as ENCODER_MASK
from .inputs import BATCH_AXIS, FRAMES_PER_STEP, mel_bins
from .swapped_forwards import swapped_attributes

FEATURE_MASK_METHOD = "_get_feature_vector_attention_mask"
AUDIO_AXIS = "audio_sequence_length"
FRAMES_AXIS = "num_frames"
SAMPLES_PER_STEP = 1600
"""Waveform samples per sequence step: 0.1 s at 16 kHz; Moonshine's stride-64/3/2 convolutions need ~900 at least."""
FIXED_WINDOW_TYPES = ("whisper",)
"""Speech encoders that take a fixed window of channels-first features and no mask (the rest are padded + masked)."""


def takes_padded_speech(model: torch.nn.Module, modality: str, config: Any) -> bool:
    """Whether this ASR model's encoder takes padded audio (``input_values``) or frames-first features
    (``input_features``) with an ``attention_mask`` and shortens both: asked of the PyTorch model, which must run
    on such a batch and give a mask at its output length (:func:`shortened_mask`). Whisper's fixed window is not."""
    if modality not in ("audio", "speech") or getattr(config, "model_type", "") in FIXED_WINDOW_TYPES:
        return False
    name = "input_values" if modality == "audio" else "input_features"
    try:
        values, mask = padded_inputs(modality, config, 2, 12, [0, 5], seed=0)
        with torch.no_grad():
            hidden, short = EncoderWithMask(model, name)(values, mask)
    except Exception:  # another layout (a fixed window, channels first): the encoder path without a mask
        return False
    return bool(short.shape == hidden.shape[:2] and short[1].sum() < short[0].sum())


def padded_inputs(modality: str, config: Any, batch: int, length: int, pads: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random audio (``modality`` "audio": (batch, samples)) or features ("speech": (batch, frames, bins)), each
    row ``pads[row]`` steps shorter than ``length`` steps, zero after its end as feature extractors pad, and its mask."""
    generator = torch.Generator().manual_seed(seed)
    step = SAMPLES_PER_STEP if modality == "audio" else FRAMES_PER_STEP
    size = length * step
    values = torch.randn((batch, size) if modality == "audio" else (batch, size, mel_bins(config)), generator=generator)
    mask = torch.ones(batch, size, dtype=torch.long)
    for row, pad in enumerate(pads[:batch]):
        if pad:
            values[row, size - pad * step:] = 0
            mask[row, size - pad * step:] = 0
    return values, mask


def input_axes(modality: str) -> dict[int, str]:
    return {0: BATCH_AXIS, 1: AUDIO_AXIS if modality == "audio" else FRAMES_AXIS}


def shortened_mask(model: torch.nn.Module, encoder_out: Any, mask: torch.Tensor) -> torch.Tensor:
    """The mask at the encoder's output length, as the model computes it for its decoder."""
    given: torch.Tensor | None = getattr(encoder_out, "attention_mask", None)
    if given is not None:  # Moonshine: the encoder returns it
        return given.long()
    hidden = encoder_out.last_hidden_state if hasattr(encoder_out, "last_hidden_state") else encoder_out[0]
    reduce = getattr(model, FEATURE_MASK_METHOD, None)
    if reduce is None:
        raise NotImplementedError(f"{type(model).__name__}: no way to shorten the attention mask to the encoder's output")
    return reduce(hidden.shape[1], mask).long()  # type: ignore[no-any-return]


class EncoderWithMask(torch.nn.Module):
    """The encoder graph's module: padded audio or features and their mask → the states and the shortened mask."""

    def __init__(self, model: torch.nn.Module, input_name: str) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.get_encoder()  # type: ignore[operator]
        self.input_name = input_name
        self.eval()

    def forward(self, values: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(**{self.input_name: values}, attention_mask=attention_mask, return_dict=True)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden, shortened_mask(self.model, out, attention_mask)


@contextlib.contextmanager
def shortened_mask_given(model: torch.nn.Module) -> Iterator[None]:
    """Until the block ends, the model takes the ``attention_mask`` it is given as already shortened: Speech2Text's
    forward would shorten it again (the encoder graph did). Only modules outside the encoder (whose own forward
    shortens its input mask) are changed; instance attributes, removed after."""
    encoder_modules = {id(m) for m in model.get_encoder().modules()}  # type: ignore[operator]
    changed = [m for m in model.modules() if id(m) not in encoder_modules and hasattr(type(m), FEATURE_MASK_METHOD)
               and FEATURE_MASK_METHOD not in vars(m)]
    with swapped_attributes(FEATURE_MASK_METHOD, ((module, lambda length, mask: mask) for module in changed)):
        yield


LENGTHS_METHOD = "_get_feat_extract_output_lengths"


def conv_output_length(encoder: torch.nn.Module, length: Any) -> Any:
    """The length after the encoder's own stack of 1-D convolutions, in integer arithmetic only (a traced length
    stays symbolic; ``int(length / 64 + 1)`` turns it into a constant of the trace)."""
    for conv in (m for m in encoder.children() if isinstance(m, torch.nn.Conv1d)):
        padding = conv.padding[0] if isinstance(conv.padding, tuple) else 0
        length = (length + 2 * padding - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
    return length


@contextlib.contextmanager
def symbolic_conv_lengths(model: torch.nn.Module) -> Iterator[bool]:
    """Moonshine's encoder cuts its shortened mask to a length computed with float division and ``int()``, which
    torch.export fixes at the traced length. Until the block ends its length function is the same count in integer
    arithmetic (:func:`conv_output_length`), where the two agree on a range of lengths; yields whether it swapped."""
    encoder = model.get_encoder()  # type: ignore[operator]
    original: Any = getattr(encoder, LENGTHS_METHOD, None)
    swap = original is not None and LENGTHS_METHOD not in vars(encoder) and any(isinstance(m, torch.nn.Conv1d) for m in encoder.children())
    if swap:
        try:  # from 4000 samples on: trunc and floor differ below zero
            swap = all(int(original(n)) == conv_output_length(encoder, n) for n in range(4000, 40000, 397))
        except Exception:  # a length function over tensors, or one that refuses ints: leave it
            swap = False
    with swapped_attributes(LENGTHS_METHOD, [(encoder, lambda lengths: conv_output_length(encoder, lengths))] if swap else []):
        yield swap
