"""What an encoder graph hands the decoder graphs besides its states, shared by the exporter and the model classes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput

ENCODER_MASK = "encoder_attention_mask"
"""The encoder graph's second output where the encoder shortens padded audio: the mask at its output length."""


@dataclass
class EncoderOutputWithMask(BaseModelOutput):  # type: ignore[misc]
    """Encoder states with the mask at their length (Moonshine's decoder reads ``encoder_outputs.attention_mask``;
    ``generate()`` repeats it with the states for beams)."""

    attention_mask: torch.Tensor | None = None
