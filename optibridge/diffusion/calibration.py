"""Calibration samples for static int8 on a pipeline artifact: the float pipeline generates from a
few prompts and every input its text encoder(s) and UNet receive is recorded (the UNet gets one
feed per denoising step, with the classifier-free-guidance batch), so activation ranges come from
the latents and timesteps the pipeline really produces, not from random tensors.

The VAE graphs get no samples: they stay in float (see :data:`CALIBRATED_GRAPHS`). Prompts come from
``--calibration FILE`` (one per line) or :data:`CALIBRATION_PROMPTS`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifact import Artifact
from ..configs import CalibrationConfig, CalibrationData
from ..errors import CalibrationError
from .record import diffusion_record
from .samples import native_size

CALIBRATION_PROMPTS = (
    "a photograph of a mountain lake at sunrise",
    "a portrait of an old fisherman, oil painting",
    "a futuristic city street at night, neon lights",
    "a bowl of fruit on a wooden table",
)
CALIBRATION_STEPS = 4
GUIDANCE_SCALE = 7.5
CALIBRATED_GRAPHS = ("text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer")
"""The denoiser and text encoders are quantized; the VAE's convolutions and wide activations stay float."""
IMAGE_PSNR_GATE_DB = 30.0
"""Static int8 of a pipeline is kept only when its images are at least this close (PSNR) to the float
pipeline's (the tiny test pipeline reaches ~40 dB with int8 weights; 30 dB is a visible but small change)."""


class _Recorder:
    """A session that records every feed before running it."""

    def __init__(self, session: Any, feeds: list[dict[str, np.ndarray]]) -> None:
        self.session = session
        self.feeds = feeds
        self.input_names = session.input_names
        self.output_names = session.output_names

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append({k: np.array(v, copy=True) for k, v in feed.items()})
        result: dict[str, np.ndarray] = self.session.run(feed)
        return result


def _prompts(config: CalibrationConfig) -> list[str]:
    if config.source is None:
        return list(CALIBRATION_PROMPTS)
    path = Path(config.source).expanduser()
    if path.suffix not in (".txt", ".text", "") or not path.is_file():
        raise CalibrationError(f"calibration for a diffusion pipeline is a text file of prompts, one per line; {path} is not one")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise CalibrationError(f"calibration file {path} holds no prompts; write one prompt per line")
    return prompts


def pipeline_calibration(artifact: Artifact, config: CalibrationConfig, backend: str = "auto") -> CalibrationData:
    """Run the float pipeline of ``artifact`` on the calibration prompts and return the recorded feeds."""
    import torch

    from .pipelines import pipeline_class

    pipe: Any = pipeline_class(diffusion_record(artifact).family.name).from_pretrained(artifact.path, backend=backend)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {}
    family = diffusion_record(artifact).family
    for component in (getattr(pipe, family.denoiser), *(getattr(pipe, name, None) for name in family.text_encoders)):
        if component is None:
            continue
        for graph in list(component.sessions):
            if graph in CALIBRATED_GRAPHS:
                component.sessions[graph] = _Recorder(component.sessions[graph], feeds.setdefault(graph, []))
    prompts = _prompts(config)
    # Each image gives CALIBRATION_STEPS denoiser feeds: enough images to reach num_samples of them.
    images = min(len(prompts), max(1, math.ceil(config.num_samples / CALIBRATION_STEPS)))
    side = native_size(artifact)
    for index, prompt in enumerate(prompts[:images]):
        pipe(prompt, num_inference_steps=CALIBRATION_STEPS, guidance_scale=GUIDANCE_SCALE, height=side, width=side,
             generator=torch.Generator().manual_seed(index), output_type="latent")
    batches = {graph: recorded[: config.num_samples] for graph, recorded in feeds.items() if recorded}
    count = max(len(b) for b in batches.values())
    description = (f"{count} feed(s) recorded from the float pipeline: {images} prompt(s) "
                   f"({'optibridge built-in' if config.source is None else config.source}), {CALIBRATION_STEPS} steps, "
                   f"{side}×{side}, guidance {GUIDANCE_SCALE}")
    return CalibrationData(batches, config, description, builtin=config.source is None)


def image_gate(accuracy: dict[str, Any], mode: str, gate_db: float = IMAGE_PSNR_GATE_DB) -> None:
    """Refuse a quantized pipeline whose images are further than ``gate_db`` PSNR from the float ones."""
    from ..errors import AccuracyBudgetError

    value = accuracy.get("psnr_db")
    if value is None or value == math.inf or float(value) >= gate_db:
        return
    raise AccuracyBudgetError(
        f"{mode} int8 changes the pipeline's images too much: PSNR {float(value):.1f} dB against the float pipeline "
        f"(mean abs pixel diff {accuracy.get('mean_abs_pixel_diff', float('nan')):.2e}), below the {gate_db:g} dB gate; "
        "nothing was written. Use --mode dynamic (activations quantized at run time) or a weight-only int8 mode (see `optibridge backends`)"
    )


__all__: Sequence[str] = ("CALIBRATION_PROMPTS", "IMAGE_PSNR_GATE_DB", "image_gate", "pipeline_calibration")
