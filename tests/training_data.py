"""A synthetic classification task a tiny BERT learns in seconds: is the word "cat" in the sentence?"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

WORDS = ("dog bird fish horse cow mouse tree house car road city river sun moon book school music "
         "game ball food bread milk coffee apple flower garden park street hand").split()
KEY = "cat"


def sentences(count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` sentences of 4-9 random words; label 1 when "cat" is one of them (half of them)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        words = rng.choices(WORDS, k=rng.randint(4, 9))
        label = i % 2
        if label:
            words[rng.randrange(len(words))] = KEY
        rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def bert_classifier(dest: Path, *, layers: int, seed: int = 0, hidden: int = 32, heads: int = 4, intermediate: int = 64) -> Path:
    """A random tiny BERT with a 2-label head (weights ~ N(0, 1/fan_in)), saved with the tiny tokenizer."""
    from tiny_models import MAX_POSITIONS, PAD_ID, VOCAB_SIZE, make_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=MAX_POSITIONS, pad_token_id=PAD_ID,
                        num_labels=2, id2label={0: "NO", 1: "CAT"}, label2id={"NO": 0, "CAT": 1},
                        architectures=["BertForSequenceClassification"])
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, parameter.shape[-1] ** -0.5)
    model.save_pretrained(dest)
    make_tokenizer(("input_ids", "token_type_ids", "attention_mask")).save_pretrained(dest)
    return dest


def tokenized(tokenizer: Any, rows: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{**tokenizer(text), "labels": label} for text, label in rows]
