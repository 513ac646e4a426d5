"""Accuracy of an optimized/quantized pipeline measured where it matters: on the images.

Both pipelines generate from the same prompts and seeds; the result is the mean and max absolute
pixel difference (pixels in [0, 1]) and the PSNR of the candidate's images against the reference's.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

PROMPTS = ("a cat on a mat", "a red cube")


@dataclass(frozen=True)
class ImageAccuracy:
    mean_abs_pixel_diff: float
    max_abs_pixel_diff: float
    psnr_db: float
    """10·log10(1 / MSE) over all pixels; inf when the images are identical."""
    images: int
    num_inference_steps: int
    size: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.images} image(s) {self.size[0]}×{self.size[1]}, {self.num_inference_steps} steps: mean abs pixel diff "
                f"{self.mean_abs_pixel_diff:.2e}, max {self.max_abs_pixel_diff:.2e}, PSNR {self.psnr_db:.1f} dB")


def psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def compare_images(
    reference: str | os.PathLike[str], candidate: str | os.PathLike[str], *, backend: str = "auto",
    candidate_backend: str | None = None, prompts: Sequence[str] = PROMPTS, num_inference_steps: int = 3,
    height: int | None = None, width: int | None = None, guidance_scale: float = 7.5, seed: int = 0,
) -> ImageAccuracy:
    """Generate with the pipeline artifacts ``reference`` and ``candidate`` (the same seeds) and compare the images."""
    import torch

    from ..artifact import Artifact
    from .pipelines import pipeline_class

    cls: Any = pipeline_class(Artifact.load(reference).metadata.extra.get("diffusion", {}).get("family", "stable-diffusion"))
    outputs = []
    for folder, name in ((reference, backend), (candidate, candidate_backend or backend)):
        pipe = cls.from_pretrained(folder, backend=name)
        outputs.append(np.concatenate([
            pipe(prompt, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, height=height, width=width,
                 generator=torch.Generator().manual_seed(seed + i), output_type="np").images
            for i, prompt in enumerate(prompts)
        ]))
    want, got = outputs
    diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
    return ImageAccuracy(float(diff.mean()), float(diff.max()), psnr(want, got), len(want), num_inference_steps,
                         (int(want.shape[1]), int(want.shape[2])))
