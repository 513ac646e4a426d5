"""Export image captioners (a vision encoder-decoder, and BLIP's) and caption images with ONNX Runtime.

Builds tiny random captioners so the example runs offline; with a real checkpoint (a folder saved
from nlpconnect/vit-gpt2-image-captioning, or Salesforce/blip-image-captioning-base) the same lines
apply. BLIP's captions are compared with its own ``generate()``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_vision import build_tiny_blip, build_tiny_captioner  # noqa: E402

from optibridge import OBModelForVision2Seq, export  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = build_tiny_captioner(Path(tmp) / "captioner")
        result = export(source, Path(tmp) / "onnx")  # task image-to-text, inferred from the config
        print("exported", result.task, "image size:", result.artifact.metadata.extra["image_size"])
        model = OBModelForVision2Seq.from_pretrained(result.artifact.path)
        pixels = torch.randn(2, 3, 32, 32)
        print(model.generate(pixel_values=pixels, max_new_tokens=8).tolist())

        import transformers

        blip = build_tiny_blip(Path(tmp) / "blip")
        result = export(blip, Path(tmp) / "blip-onnx")  # image-to-text, inferred from BlipForConditionalGeneration
        ours = OBModelForVision2Seq.from_pretrained(result.artifact.path).generate(pixel_values=pixels, max_new_tokens=8)
        theirs = transformers.BlipForConditionalGeneration.from_pretrained(blip).eval().generate(pixel_values=pixels, max_new_tokens=8)
        print("BLIP", ours.tolist(), "same as BLIP's generate():", torch.equal(ours, theirs))


if __name__ == "__main__":
    main()
