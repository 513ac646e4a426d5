"""Export a llava-style model (a decoder LM that takes images) and generate from images and text.

Builds a tiny random llava (CLIP vision tower + llama) with its LlavaProcessor so the example runs
offline; with a real checkpoint (a folder saved from llava-hf/llava-1.5-7b-hf) the same lines apply.
The tokens are compared with ``LlavaForConditionalGeneration.generate`` on the same inputs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_vision import build_tiny_llava  # noqa: E402

from optibridge import export  # noqa: E402
from optibridge.openvino import OVModelForVisualCausalLM  # noqa: E402  (was: from optimum.intel import ...)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = build_tiny_llava(Path(tmp) / "llava")
        result = export(source, Path(tmp) / "llava-onnx")  # task image-text-to-text, inferred
        print("exported", result.task, "graphs:", ", ".join(result.artifact.metadata.graphs))

        processor = transformers.AutoProcessor.from_pretrained(result.artifact.path)  # kept in the artifact
        images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)) for i in range(2)]
        prompts = ["<image> what is in the picture?", "<image> describe it"]
        inputs = processor(images=images, text=prompts, return_tensors="pt", padding=True)

        model = OVModelForVisualCausalLM.from_pretrained(result.artifact.path, stateful=True)  # the KV cache inside OpenVINO
        ours = model.generate(**inputs, max_new_tokens=12, do_sample=False)
        reference = transformers.LlavaForConditionalGeneration.from_pretrained(source).eval()
        theirs = reference.generate(**inputs, max_new_tokens=12, do_sample=False)
        print("same tokens as LlavaForConditionalGeneration.generate():", torch.equal(ours, theirs))
        for text in processor.batch_decode(ours[:, inputs["input_ids"].shape[1]:]):
            print("  ", text)

        pipe = transformers.pipeline("image-text-to-text", model=model, processor=processor)
        print("pipeline:", pipe(images=images[0], text=prompts[0], max_new_tokens=6)[0]["generated_text"])


if __name__ == "__main__":
    main()
