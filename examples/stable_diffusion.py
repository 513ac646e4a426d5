"""A diffusers Stable Diffusion pipeline on ONNX Runtime or OpenVINO, with only the class swapped.

    python examples/stable_diffusion.py SD_FOLDER --artifact sd-onnx --backend openvino --steps 20

SD_FOLDER is a folder written by ``save_pretrained`` of a Stable Diffusion, SDXL, LCM or Stable
Diffusion 3 pipeline. The artifact is exported on the first run (`optibridge export --model SD_FOLDER
sd-onnx` does the same) and reused after. The script then generates the same image with diffusers'
PyTorch pipeline (``AutoPipelineForText2Image``) and with ``OBPipelineForText2Image`` from the same
seed, swaps the scheduler as one would in diffusers (Euler; for SD3's flow matching, another shift of
its schedule), and prints the mean absolute pixel difference and the seconds per image.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
from diffusers import AutoPipelineForText2Image, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

from optibridge import OBPipelineForText2Image, export  # was: from diffusers import AutoPipelineForText2Image
from optibridge.artifact import is_artifact


def swapped(scheduler):
    """Another scheduler, as one would swap it in diffusers."""
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):  # SD3 runs flow-matching schedulers only
        return FlowMatchEulerDiscreteScheduler.from_config(scheduler.config, shift=1.0)
    return EulerDiscreteScheduler.from_config(scheduler.config)


def generate(pipe, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    images = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=7.5, height=args.size, width=args.size,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    return images, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a diffusers Stable Diffusion (SDXL, LCM, SD3) pipeline folder")
    parser.add_argument("--artifact", default="sd-onnx", help="the optibridge artifact (exported when missing)")
    parser.add_argument("--backend", default="ort", help="ort | openvino | cuda")
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    if not is_artifact(args.artifact):
        export(args.folder, args.artifact)
    pipe = OBPipelineForText2Image.from_pretrained(args.artifact, backend=args.backend)
    reference = AutoPipelineForText2Image.from_pretrained(args.folder)
    reference.set_progress_bar_config(disable=True)

    for label in ("default scheduler", "swapped scheduler"):
        if label.startswith("swapped"):  # the swap, exactly as with the diffusers pipeline
            pipe.scheduler = swapped(pipe.scheduler)
            reference.scheduler = swapped(reference.scheduler)
        ours, ours_s = generate(pipe, args)
        theirs, theirs_s = generate(reference, args)
        diff = float(np.abs(ours - theirs).mean())
        print(f"{label} ({type(pipe.scheduler).__name__}): mean abs pixel diff vs PyTorch {diff:.2e}; "
              f"{args.backend} {ours_s:.2f} s/image, PyTorch {theirs_s:.2f} s/image")


if __name__ == "__main__":
    main()
