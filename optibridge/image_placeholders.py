"""What a decoder LM that takes images records about them (``optibridge.json`` ``extra["image_tokens"]``).

Written by the exporter (:mod:`optibridge.exporter.visual_lm`), read by the model class; read back
from an artifact, every field is checked, as everything read from an artifact folder is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .errors import ArtifactError

VISION_GRAPH = "vision_embeddings"
IMAGE_FEATURES = "image_features"
IMAGE_NEWLINE = "image_newline"
PACKINGS = ("flat", "anyres")
ATTENTIONS = ("causal", "image-blocks")
"""How the placeholders attend: ``causal`` like the text, or ``image-blocks`` (gemma3): each image's placeholders
also see each other both ways in the prompt's step (the decoder graph derives the blocks from the ids itself)."""
"""How the vision graph's rows become placeholder rows: ``flat`` (llava: as they come, ``per_image`` per
image) or ``anyres`` (llava-next: each image tiled by its size; the graph gives ``per_image`` rows per
tile, which the model's own ``pack_image_features`` unpads and ends with ``image_newline``, see :mod:`.image_packing`)."""
EXTRA_KEY = "image_tokens"
DEFAULT_IMAGE_PROMPT = "Describe the image."
"""What ``optibridge run`` asks of every image when no ``--prompt`` is given."""
LIMITS = {"token_id": (0, 2**31 - 1), "per_image": (1, 65536), "width": (1, 65536), "image_size": (1, 8192), "channels": (1, 16)}


@dataclass(frozen=True)
class ImageTokens:
    """The placeholder token, feature rows per image, their width, and the image the vision graph takes."""

    token_id: int
    per_image: int
    width: int
    image_size: int
    channels: int
    packing: str = "flat"
    attention: str = "causal"

    def to_extra(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], where: str) -> "ImageTokens":
        found = extra.get(EXTRA_KEY)
        if not isinstance(found, Mapping):
            raise ArtifactError(f"{where}: optibridge.json has no extra.{EXTRA_KEY} record; re-export the model with --task image-text-to-text")
        values = {}
        for name, (low, high) in LIMITS.items():
            value = found.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ArtifactError(f"{where}: extra.{EXTRA_KEY}.{name} must be an integer in {low}..{high}, got {value!r}; re-export the model")
            values[name] = value
        packing = found.get("packing", "flat")
        if packing not in PACKINGS:
            raise ArtifactError(f"{where}: extra.{EXTRA_KEY}.packing must be one of {', '.join(PACKINGS)}, got {packing!r}; re-export the model")
        attention = found.get("attention", "causal")
        if attention not in ATTENTIONS:
            raise ArtifactError(f"{where}: extra.{EXTRA_KEY}.attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}; re-export the model")
        return cls(**values, packing=packing, attention=attention)
