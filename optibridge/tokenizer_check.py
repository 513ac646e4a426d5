"""Whether a tokenizer is real: the one check both export and the accuracy steps rely on."""

from __future__ import annotations

from typing import Any

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.model", "spm.model", "source.spm",
)
"""Files a saved tokenizer is made of; a local folder with none of them has no tokenizer."""
PROBE_TEXT = "The quick brown fox jumps over the lazy dog."


def usable_tokenizer(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` has a real vocabulary and turns text into tokens. transformers can build
    one for a folder that has none: an empty vocabulary (every text → []) or only special tokens
    (every word → [UNK])."""
    try:
        ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        return len(ids) > 0 and len(tokenizer) > len(special)
    except Exception:  # a tokenizer that cannot even tokenize is not usable
        return False
