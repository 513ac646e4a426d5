"""Training-time compression: quantization-aware training (NNCF), structured pruning and distillation.

``OBTrainer`` is a ``transformers.Trainer``; its ``save_model(out)`` writes an optibridge artifact
that ``OBModelFor<Task>.from_pretrained(out)`` loads. See docs/training.md.
"""

from .config import DistillationConfig, PruningConfig, QATConfig, TrainingConfigError
from .trainer import OBTrainer

__all__ = ["DistillationConfig", "OBTrainer", "PruningConfig", "QATConfig", "TrainingConfigError"]
