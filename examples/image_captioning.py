"""Export an image captioner (vision encoder-decoder) and caption images with ONNX Runtime.

Builds a tiny random ViT → GPT-2 captioner so the example runs offline; with a real checkpoint
(e.g. a folder saved from nlpconnect/vit-gpt2-image-captioning) the same lines apply.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_vision import build_tiny_captioner  # noqa: E402

from optibridge import OBModelForVision2Seq, export  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = build_tiny_captioner(Path(tmp) / "captioner")
        result = export(source, Path(tmp) / "onnx")  # task image-to-text, inferred from the config
        print("exported", result.task, "image size:", result.artifact.metadata.extra["image_size"])
        model = OBModelForVision2Seq.from_pretrained(result.artifact.path)
        pixels = torch.randn(2, 3, 32, 32)
        print(model.generate(pixel_values=pixels, max_new_tokens=8).tolist())


if __name__ == "__main__":
    main()
