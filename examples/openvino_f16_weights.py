"""A decoder LM on OpenVINO with float16 weights and float32 arithmetic (`quantize --mode f16-weights`).

    HF_HUB_OFFLINE=1 python examples/openvino_f16_weights.py                 # a random GPT-2, offline
    python examples/openvino_f16_weights.py --model ./my-gpt2 --tokens 64    # a local decoder LM folder

A batch-1 decode step reads every weight once; storing them as float16 halves those bytes while
OpenVINO's CPU plugin still sums in float32. The same as

    optibridge export --model ./my-gpt2 --task text-generation gpt2-onnx
    optibridge quantize gpt2-onnx --mode f16-weights gpt2-ov-f16w

The script checks greedy tokens against PyTorch and times both IRs (float32 and float16 weights)
against PyTorch, interleaved. Without --model the random GPT-2 is small, so the timing says little:
pass a real model for that. With openvino-genai installed (`optibridge[genai]`) both IRs decode in
its native loop; the printed loop name says which ran (docs/generation.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from optibridge import OBModelForCausalLM, export, optimize, quantize
from optibridge.bench import measure_interleaved
from optibridge.steps import QuantizationConfig


def random_gpt2(folder: Path) -> Path:
    """A random 4-layer GPT-2, weights ~ N(0, 1/fan_in) so its logits are O(1) and greedy tokens are not ties."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=256, n_layer=4, n_head=4, vocab_size=4096, n_positions=256)).eval()
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if weight.dim() == 2:  # GPT-2's Conv1D stores (in, out); the embeddings (rows, width)
                fan_in = weight.shape[1] if name.endswith(("wte.weight", "wpe.weight")) else weight.shape[0]
                weight.normal_(0.0, fan_in ** -0.5)
    model.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="decoder LM folder or hub id (default: a random GPT-2)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per generate() call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the median is printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model or random_gpt2(Path(tmp) / "gpt2")
        onnx = export(source, Path(tmp) / "onnx", task="text-generation").artifact
        f32 = optimize(onnx.path, output_dir=Path(tmp) / "ov-f32", backend="openvino").artifact
        f16w = quantize(onnx.path, QuantizationConfig(mode="f16-weights"), Path(tmp) / "ov-f16w").artifact
        sizes = {name: sum(f["bytes"] for f in a.metadata.files.values()) / 1e6 for name, a in (("f32", f32), ("f16w", f16w))}
        print(f"IR sizes: float32 weights {sizes['f32']:.1f} MB, float16 weights {sizes['f16w']:.1f} MB "
              f"(weights: {f16w.metadata.extra['openvino']['weights']})")

        reference = AutoModelForCausalLM.from_pretrained(source).eval()
        models = {"PyTorch": reference,
                  "OpenVINO f32 weights": OBModelForCausalLM.from_pretrained(f32.path, backend="openvino"),
                  "OpenVINO f16 weights": OBModelForCausalLM.from_pretrained(f16w.path, backend="openvino")}
        print(f"inference precision: {models['OpenVINO f16 weights'].inference_precision}")

        prompt = torch.randint(10, 1000, (1, 16), generator=torch.Generator().manual_seed(1))
        greedy = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            expected = reference.generate(input_ids=prompt, **greedy)
            ours = models["OpenVINO f16 weights"].generate(input_ids=prompt, **greedy)
        print(f"same tokens as PyTorch: {torch.equal(torch.as_tensor(ours), expected)} "
              f"(loop: {models['OpenVINO f16 weights'].last_generation_engine})")

        def call(model: object) -> object:
            with torch.inference_mode():
                return model.generate(input_ids=prompt, **greedy)  # type: ignore[attr-defined]

        # interleaved, so a busy moment hits every model alike; medians in ms
        stats = measure_interleaved({name: (lambda m=model: call(m)) for name, model in models.items()},
                                    warmup=1, runs=args.rounds)
        base = stats["PyTorch"].median
        for name, stat in stats.items():
            print(f"{name:22s} {args.tokens * 1000 / stat.median:7.1f} tok/s  {base / stat.median:5.2f}x PyTorch")


if __name__ == "__main__":
    main()
