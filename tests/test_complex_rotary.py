"""Rotary embeddings written with complex numbers (DeepSeek-V2, Llama 4): the real-valued rewrite used
during export computes the same rotation, puts the originals back, and the models export and generate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from optibridge.exporter.complex_rotary import FAMILIES, real_valued_rotary

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from sweep import check  # noqa: E402
from tiny_configs import tiny_config  # noqa: E402


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.rotary_class)
def test_the_real_rotation_equals_the_complex_one_and_the_originals_come_back(family):
    namespace = sys.modules.get(family.module) or __import__(family.module, fromlist=["_"])
    model_type = {"DeepseekV2RotaryEmbedding": "deepseek_v2", "Llama4TextRotaryEmbedding": "llama4_text"}[family.rotary_class]
    config = tiny_config(model_type)
    rotary = getattr(namespace, family.rotary_class)(config)
    original_apply = namespace.apply_rotary_emb
    generator = torch.Generator().manual_seed(0)
    positions = torch.tensor([[0, 1, 2, 7, 30]])
    width = 2 * rotary.inv_freq.numel()
    shape = (1, 3, 5, width) if family.head_axis == 1 else (1, 5, 3, width)  # heads before or after the sequence
    q, k = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    table = rotary(q, positions)
    assert table.is_complex()
    want = original_apply(q, k, table)
    holder = torch.nn.ModuleDict({"rotary": rotary})
    with real_valued_rotary(holder) as changed:
        assert changed == 1
        real_table = rotary(q, positions)
        assert not real_table.is_complex() and real_table.shape[-1] == 2
        got = namespace.apply_rotary_emb(q, k, real_table)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(want[0], q)  # the rotation did something at positions > 0
    assert namespace.apply_rotary_emb is original_apply and "forward" not in vars(rotary)
    assert rotary(q, positions).is_complex()


def test_deepseek_v2_exports_validates_and_generates_like_pytorch(tmp_path):
    # complex rotary + latent attention + experts; before, "No ONNX function ... complex-valued input"
    result = check("deepseek_v2", "text-generation", tmp_path)
    assert result.status == "pass", result.cause
    assert result.max_diff is not None and result.max_diff <= 1e-4
    assert result.generation.startswith("6 steps, tokens identical"), result.generation
