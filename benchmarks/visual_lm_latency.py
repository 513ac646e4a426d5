"""Image-and-prompt generation, llava: LlavaForConditionalGeneration (PyTorch eager) vs
OBModelForVisualCausalLM on ONNX Runtime and OpenVINO (stateful), interleaved, medians, greedy,
the same image and prompt; with each candidate's tokens compared to PyTorch's.

    HF_HUB_OFFLINE=1 python benchmarks/visual_lm_latency.py LLAVA_FOLDER --artifact llava-onnx --new-tokens 32

Without LLAVA_FOLDER a random llava of roughly llava-1.5's vision side at reduced depth is built
(CLIP ViT-B/16 at 224 px: 196 placeholder tokens per image; a 1024-wide, 8-layer llama), with
weights drawn N(0, 1/fan_in) so greedy tokens are not ties. Timed: one whole ``generate()`` (vision
graph, prefill over the placeholders and the prompt, ``--new-tokens`` steps) per call.
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

from optibridge import OBModelForVisualCausalLM, export  # noqa: E402
from optibridge.artifact import is_artifact  # noqa: E402
from optibridge.hardware import float_precisions  # noqa: E402


def random_llava(dest: Path) -> Path:
    vision = transformers.CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                           image_size=224, patch_size=16, projection_dim=768)
    text = transformers.LlamaConfig(vocab_size=32064, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                                    num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048,
                                    bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = transformers.LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=32000,
                                      vision_feature_layer=-2)
    config.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    redraw_weights(model)
    model.save_pretrained(dest)
    return dest


def main() -> None:
    args = generation_arguments(__doc__.splitlines()[0], "LlavaForConditionalGeneration", prompt_tokens=16,
                                prompt_help="text tokens after the image's placeholders")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else random_llava(Path(tmp) / "llava")
        artifact = Path(args.artifact) if args.artifact else Path(tmp) / "llava-onnx"
        if not is_artifact(artifact):
            export(folder, artifact)
        reference = transformers.LlavaForConditionalGeneration.from_pretrained(folder).eval()
        models = candidates(OBModelForVisualCausalLM, artifact, args.threads)
        if "bf16" in float_precisions():
            models["openvino-bf16"] = OBModelForVisualCausalLM.from_pretrained(artifact, backend="openvino", stateful=True,
                                                                               inference_precision="bf16", inference_num_threads=args.threads)
        tokens = models["ort"].image_tokens
        rng = np.random.default_rng(0)
        ids = torch.from_numpy(rng.integers(3, 30000, (1, tokens.per_image + args.prompt_tokens)))
        ids[0, :tokens.per_image] = tokens.token_id
        pixels = torch.from_numpy(rng.standard_normal((1, tokens.channels, tokens.image_size, tokens.image_size)).astype(np.float32))
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, max_new_tokens=args.new_tokens,
                      min_new_tokens=args.new_tokens, do_sample=False)
        compare_and_time(lambda: reference.generate(**kwargs), models, kwargs, ids.shape[1], args.runs,
                         f"{tokens.per_image} placeholder tokens + {args.prompt_tokens} prompt tokens, {args.new_tokens} new tokens, "
                         f"{args.threads} threads, {args.runs} interleaved runs, medians")

if __name__ == "__main__":
    main()
