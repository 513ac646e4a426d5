"""Mixture-of-experts decoders (Mixtral, Qwen-MoE, OLMoE, GPT-OSS...) and multi-head latent attention
(DeepSeek-V2/V3): the experts forward the exporter swaps in computes what transformers' own does, and
the exported models generate like PyTorch, latent caches (keys and values of different widths) included."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from optibridge.exporter.moe import is_dispatched_experts, sparse_experts_forward, traceable_experts

sys.path.insert(0, str(Path(__file__).parent / "coverage"))
from sweep import check  # noqa: E402


def _experts(model_type: str) -> torch.nn.Module:
    """One experts module of a tiny model, weights N(0, 1/fan_in) so outputs are O(1)."""
    import transformers

    if model_type == "mixtral":
        config = transformers.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2)
        module = transformers.models.mixtral.modeling_mixtral.MixtralExperts(config)
    else:  # gpt_oss: transposed weights with biases, interleaved gate/up and its own clamped gate
        config = transformers.GptOssConfig(hidden_size=16, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2)
        module = transformers.models.gpt_oss.modeling_gpt_oss.GptOssExperts(config)
    config._experts_implementation = "eager"
    generator = torch.Generator().manual_seed(0)
    for parameter in module.parameters():
        fan_in = parameter.shape[-1] if parameter.dim() > 1 else 1
        parameter.data = torch.randn(parameter.shape, generator=generator) / fan_in ** 0.5
    return module.eval()


@pytest.mark.parametrize("model_type", ["mixtral", "gpt_oss"])
def test_sparse_forward_computes_what_the_model_computes_with_an_idle_expert(model_type):
    experts = _experts(model_type)
    assert is_dispatched_experts(experts)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(5, 16, generator=generator)
    index = torch.tensor([[0, 1], [1, 0], [3, 1], [0, 3], [1, 3]])  # expert 2 gets no token
    weights = torch.softmax(torch.randn(5, 2, generator=generator), dim=-1)
    with torch.no_grad():
        want = experts(hidden, index, weights)
        got = sparse_experts_forward(experts, hidden, index, weights)
    assert want.abs().max() > 0.1  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # every expert that has tokens matters: routing one token elsewhere changes that token's row only
    moved = index.clone()
    moved[2, 0] = 2
    with torch.no_grad():
        changed = sparse_experts_forward(experts, hidden, moved, weights)
    assert not torch.allclose(changed[2], got[2], atol=1e-4)
    torch.testing.assert_close(changed[[0, 1, 3, 4]], got[[0, 1, 3, 4]])


def test_traceable_experts_swaps_the_forward_for_the_block_only():
    experts = _experts("mixtral")
    holder = torch.nn.ModuleDict({"layer": torch.nn.ModuleDict({"experts": experts})})
    with traceable_experts(holder) as changed:
        assert changed == 1
        assert experts.forward.__func__ is sparse_experts_forward
    assert "forward" not in vars(experts)  # the class's own dispatch is back


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe"])
def test_moe_decoder_exports_validates_and_generates_like_pytorch(model_type, tmp_path):
    # Before the traceable experts, both failed to export (transformers' grouped_mm op has no ONNX form).
    # qwen2_moe adds a gated shared expert beside the routed ones.
    result = check(model_type, "text-generation", tmp_path)
    assert result.status == "pass", f"{model_type}: {result.cause}"
    assert result.max_diff is not None and result.max_diff <= 1e-4
    assert result.generation.startswith("6 steps, tokens identical"), result.generation


def test_latent_attention_decoder_caches_keys_and_values_at_their_own_widths(tmp_path):
    # DeepSeek-V3: MLA caches a latent (as "key") and the rotary part (as "value"), and routes its FFN
    # through experts. Before, the exporter assumed one width for both and the export failed.
    from optibridge import Artifact
    from optibridge.modeling import OBModelForCausalLM

    result = check("deepseek_v3", "text-generation", tmp_path)
    assert result.status == "pass", result.cause
    assert result.generation.startswith("6 steps, tokens identical"), result.generation
    artifact = tmp_path / "deepseek_v3-onnx"
    layout = Artifact.load(artifact).metadata.extra["kv_cache"]
    assert layout["value_head_dim"] is not None and layout["value_head_dim"] != layout["head_dim"]
    model = OBModelForCausalLM.from_pretrained(artifact)
    model.generate(input_ids=torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False, pad_token_id=0)
    # the native loops cannot describe such a cache: generate() says why it used transformers' loop
    assert model.last_generation_engine == "transformers"
    assert "different widths" in model.generation_fallback_reason
