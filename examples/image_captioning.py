"""Export image captioners (a vision encoder-decoder, BLIP's, Pix2Struct) and caption images with ONNX Runtime.

Builds tiny random captioners so the example runs offline; with a real checkpoint (a folder saved
from nlpconnect/vit-gpt2-image-captioning, Salesforce/blip-image-captioning-base or
google/pix2struct-textcaps-base) the same lines apply. BLIP's and Pix2Struct's tokens are compared
with their own ``generate()``; then ``optibridge run`` captions a folder of image files, one row each.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_vision import build_tiny_blip, build_tiny_captioner, build_tiny_pix2struct  # noqa: E402

from optibridge import OBModelForVision2Seq, export  # noqa: E402
from optibridge.batch import run_file  # noqa: E402
from optibridge.onnxruntime import ORTModelForPix2Struct  # noqa: E402  (was: from optimum.onnxruntime import ...)


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

        # Pix2Struct: its image processor cuts each image into patches; the exported encoder takes them as they come
        import numpy as np
        from PIL import Image

        pix2struct = build_tiny_pix2struct(Path(tmp) / "pix2struct")
        result = export(pix2struct, Path(tmp) / "pix2struct-onnx")
        images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64 + 16 * i, 3), dtype=np.uint8)) for i in range(2)]
        inputs = transformers.Pix2StructImageProcessor.from_pretrained(pix2struct)(images=images, return_tensors="pt")
        ours = ORTModelForPix2Struct.from_pretrained(result.artifact.path).generate(**inputs, max_new_tokens=8)
        reference = transformers.Pix2StructForConditionalGeneration.from_pretrained(pix2struct).eval()
        print("Pix2Struct", ours.tolist(), "same as its generate():", torch.equal(ours, reference.generate(**inputs, max_new_tokens=8)))

        # a folder of images, one caption per file (the artifact keeps its image processor and tokenizer)
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, image in enumerate(images):
            image.save(folder / f"{i}.png")
        (folder / "list.txt").write_text("0.png\n1.png\n")
        run = run_file(Path(tmp) / "onnx", folder / "list.txt", Path(tmp) / "captions.parquet", max_new_tokens=8)
        print(f"optibridge run: {run.rows} captions written to captions.parquet")


if __name__ == "__main__":
    main()
