"""A pipeline artifact's ``extra["diffusion"]`` record and its component configs, read as untrusted input.

An artifact folder may come from anywhere. Its record names folders (each must lie inside the
artifact) and numbers that size the latents, images and sample batches optibridge builds; a config
saying ``in_channels: 10**9`` must be an error naming the field, not a 4 GB allocation. Every reader
of the record goes through :func:`diffusion_record`. Imports no diffusers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..errors import ArtifactError
from ..manifest_paths import inside
from .families import FAMILIES, PipelineFamily

DIFFUSERS_DIVISOR = 8
"""diffusers' Stable Diffusion pipelines require height and width divisible by 8 themselves."""
GRAPH_NAMES = ("text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer", "vae_decoder", "vae_encoder")
MAX_FACTOR = 64
"""Largest VAE scale factor or latent multiple accepted (Stable Diffusion's are 8 and 8)."""
MAX_WIDTH = 1 << 16
"""Largest channel count, embedding width or sequence length read from a component config."""
MAX_LATENT_SIDE = 1024
"""Largest latent ``sample_size`` read from a denoiser config (SDXL's is 128)."""
MAX_SAMPLE_VALUES = 1 << 27
"""Largest sample tensor optibridge draws for a pipeline graph (512 MiB of float32): each size is bounded,
and so is their product."""
_FIX = "re-export the pipeline with `optibridge export --model SD_FOLDER OUT`"


def _bounded(value: Any, field: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise ArtifactError(f"{field} is {value!r}; it must be a whole number from 1 to {limit}; {_FIX}")
    return value


@dataclass(frozen=True)
class DiffusionRecord:
    """What a pipeline artifact records about itself, checked."""

    artifact: Artifact
    family: PipelineFamily
    config_folders: dict[str, Path]
    """Graph name → the component folder (inside the artifact) whose config.json describes it."""
    vae_scale_factor: int
    latent_multiple: int
    """Latent sides must be multiples of it: the UNet's down-sampling, SD3's patch size, Flux's 2×2 packing."""

    @property
    def size_multiple(self) -> int:
        """Image heights and widths the graphs and diffusers both take are multiples of this."""
        return math.lcm(self.vae_scale_factor * self.latent_multiple, DIFFUSERS_DIVISOR)

    def config(self, graph: str) -> dict[str, Any]:
        """The component config of ``graph`` ({} where the folder has none or it is not a JSON object)."""
        folder = self.config_folders.get(graph)
        if folder is None:
            return {}
        try:
            data = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def latent_side(self) -> int:
        """The denoiser's own latent side (``sample_size``; its first entry where it is [height, width]; 64 where absent)."""
        denoiser = self.family.denoiser
        sample = self.config(denoiser).get("sample_size")
        if isinstance(sample, list) and sample:
            sample = sample[0]
        return _bounded(64 if sample is None else sample, f"{self.config_folders.get(denoiser, denoiser)}/config.json field "
                        "'sample_size'", MAX_LATENT_SIDE)

    def dim(self, graph: str, key: str, default: int | None = None, limit: int = MAX_WIDTH) -> int:
        """A size from ``graph``'s config, bounded (``default`` where the config does not give it)."""
        value = self.config(graph).get(key, default)
        if value is None:
            raise ArtifactError(f"{self.config_folders.get(graph, graph)}/config.json has no {key!r}; {_FIX}")
        return _bounded(value, f"{self.config_folders.get(graph, graph)}/config.json field {key!r}", limit)


def diffusion_record(artifact: Artifact) -> DiffusionRecord:
    """The artifact's diffusion record, every field checked; :class:`ArtifactError` naming the first bad one."""
    info = artifact.metadata.extra.get("diffusion")
    if not isinstance(info, dict):
        raise ArtifactError(f"{artifact.path} holds a {artifact.metadata.task!r} model, not a diffusion pipeline; load it with "
                            "the OBModelFor* class for that task")
    name = info.get("family")
    family = FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        raise ArtifactError(f"optibridge.json field extra.diffusion.family is {name!r}; optibridge runs "
                            f"{', '.join(FAMILIES)}; {_FIX}")
    folders = info.get("config_folders")
    if not isinstance(folders, dict):
        raise ArtifactError(f"optibridge.json field extra.diffusion.config_folders is {folders!r}, not a mapping; {_FIX}")
    checked: dict[str, Path] = {}
    for graph, folder in folders.items():
        if graph not in GRAPH_NAMES:
            raise ArtifactError(f"optibridge.json field extra.diffusion.config_folders names graph {graph!r}; a pipeline "
                                f"has {', '.join(GRAPH_NAMES)}; {_FIX}")
        checked[graph] = inside(artifact.path, folder, f"extra.diffusion.config_folders.{graph}")
    return DiffusionRecord(
        artifact, family, checked,
        _bounded(info.get("vae_scale_factor"), "optibridge.json field extra.diffusion.vae_scale_factor", MAX_FACTOR),
        _bounded(info.get("latent_multiple"), "optibridge.json field extra.diffusion.latent_multiple", MAX_FACTOR),
    )
