"""Mixture-of-experts generation: MixtralForCausalLM (PyTorch eager, transformers' default experts
dispatch) vs OBModelForCausalLM on ONNX Runtime and OpenVINO (stateful), interleaved, medians, greedy,
the same prompt; with each candidate's tokens compared to PyTorch's.

    HF_HUB_OFFLINE=1 python benchmarks/moe_generation.py [MIXTRAL_FOLDER] [--artifact mixtral-onnx] [--new-tokens 32]

Without MIXTRAL_FOLDER a random Mixtral at reduced size is built (1024 wide, 8 layers, 8 experts of
width 1408 with 2 routed per token, 16 query and 4 key/value heads), weights drawn N(0, 1/fan_in) so
greedy tokens are not ties. Timed: one whole ``generate()`` (prefill of ``--prompt-tokens``, then
``--new-tokens`` steps) per call. The exported graph runs every expert's tokens through its own
matrices (``NonZero`` picks them), so an expert that no token chose costs a few empty ops, not its weights.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "coverage"))
from tiny_configs import redraw_weights  # noqa: E402
from generate_vs_pytorch import candidates, compare_and_time, generation_arguments  # noqa: E402

from optibridge import OBModelForCausalLM, export  # noqa: E402
from optibridge.artifact import is_artifact  # noqa: E402


def random_mixtral(dest: Path) -> Path:
    config = transformers.MixtralConfig(vocab_size=32000, hidden_size=1024, intermediate_size=1408, num_hidden_layers=8,
                                        num_attention_heads=16, num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2,
                                        max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config).eval()
    redraw_weights(model)
    model.save_pretrained(dest)
    return dest


def main() -> None:
    args = generation_arguments(__doc__.splitlines()[0], "MixtralForCausalLM", prompt_tokens=32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else random_mixtral(Path(tmp) / "mixtral")
        artifact = Path(args.artifact) if args.artifact else Path(tmp) / "mixtral-onnx"
        if not is_artifact(artifact):
            export(folder, artifact, task="text-generation")
        reference = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        models = candidates(OBModelForCausalLM, artifact, args.threads)
        rng = np.random.default_rng(0)
        ids = torch.from_numpy(rng.integers(3, reference.config.vocab_size, (1, args.prompt_tokens)))
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                      min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
        compare_and_time(lambda: reference.generate(**kwargs), models, kwargs, ids.shape[1], args.runs,
                         f"{args.prompt_tokens} prompt tokens, {args.new_tokens} new tokens, batch 1, {args.threads} threads, "
                         f"{args.runs} interleaved runs, medians; PyTorch experts: {reference.config._experts_implementation}")

if __name__ == "__main__":
    main()
