"""What training-time compression does, as frozen dataclasses checked when they are built.

A bad value (a sparsity outside (0, 1), an unknown pruning target) fails here, before any model
is loaded or any step trained, with a message that lists the valid values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import OptibridgeError


class TrainingConfigError(OptibridgeError, ValueError):
    """A training-compression config or its inputs (teacher, data) cannot work; nothing was trained or written."""


STRUCTURED_TARGETS = {
    "heads+ffn": "remove attention heads and FFN channels",
    "heads": "remove attention heads only",
    "ffn": "remove FFN (intermediate) channels only",
}
QAT_PRESETS = ("mixed", "performance")


def _fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise TrainingConfigError(f"{name} must be a fraction strictly between 0 and 1 (e.g. 0.5 removes half), not {value!r}")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training with NNCF: int8 fake-quantization during the last ``epochs`` epochs.

    The model is first fine-tuned in float (``TrainingArguments.num_train_epochs``, with pruning and
    distillation if configured): that float model is the reference the int8 artifact is compared
    with. Then NNCF inserts fake quantizers (ranges from ``calibration_samples`` training samples)
    and training continues for ``epochs`` epochs at ``learning_rate`` (default: a tenth of the
    float phase's), so the weights learn to live with int8 rounding.
    """

    epochs: float = 1.0
    learning_rate: float | None = None
    calibration_samples: int = 64
    preset: str = "mixed"
    """NNCF preset: "mixed" (asymmetric activations, symmetric weights) or "performance" (all symmetric)."""
    reduce_range: bool | None = None
    """7-bit weights (NNCF's overflow fix on every linear): by default exactly where this CPU's int8
    products are summed in 16 bits and saturate (no VNNI, see :mod:`optibridge.hardware`). Train for
    the CPU the artifact will run on: 8-bit weights from a VNNI machine saturate on an AVX2-only one."""
    validation_atol: float = 5e-2
    """How far the exported int8 graph (ONNX Runtime's integer kernels) may be from the fake-quantized
    PyTorch model (float arithmetic on rounded values); measured 7e-3 on logits of size ~2 (tiny BERT)."""

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise TrainingConfigError(f"QATConfig.epochs must be > 0 (the QAT phase needs at least a few steps), not {self.epochs}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise TrainingConfigError(f"QATConfig.learning_rate must be > 0, not {self.learning_rate}")
        if self.calibration_samples < 1:
            raise TrainingConfigError(f"QATConfig.calibration_samples must be at least 1, not {self.calibration_samples}")
        if self.preset not in QAT_PRESETS:
            raise TrainingConfigError(f"unknown QATConfig.preset {self.preset!r}; valid: {', '.join(QAT_PRESETS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PruningConfig:
    """Gradual magnitude pruning during the float phase of training.

    ``structured`` removes whole attention heads and/or FFN channels: ``target_sparsity`` of them
    in every layer (the same count per layer, so the pruned model keeps one config), chosen by
    weight magnitude, zeroed gradually (cubic schedule from ``start`` to ``end``, fractions of the
    float phase) and physically cut out when the phase ends: the exported graph is smaller.
    ``unstructured`` (a fraction) zeroes that share of each encoder Linear weight by magnitude;
    the graph keeps its size and dense runtimes gain no speed from it (see docs/training.md).
    """

    target_sparsity: float = 0.5
    structured: str | None = "heads+ffn"
    unstructured: float | None = None
    start: float = 0.0
    end: float = 0.6
    frequency: int = 10
    """Recompute the masks every this many optimizer steps."""

    def __post_init__(self) -> None:
        _fraction("PruningConfig.target_sparsity", self.target_sparsity)
        if self.structured is not None and self.structured not in STRUCTURED_TARGETS:
            raise TrainingConfigError(
                f"unknown PruningConfig.structured {self.structured!r}; valid: {', '.join(STRUCTURED_TARGETS)} or None"
            )
        if self.unstructured is not None:
            _fraction("PruningConfig.unstructured", self.unstructured)
        if self.structured is None and self.unstructured is None:
            raise TrainingConfigError("PruningConfig prunes nothing: set structured='heads+ffn'/'heads'/'ffn' or unstructured=0.5")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise TrainingConfigError(f"PruningConfig needs 0 <= start < end <= 1 (fractions of training), not start={self.start}, end={self.end}")
        if self.frequency < 1:
            raise TrainingConfigError(f"PruningConfig.frequency must be at least 1 step, not {self.frequency}")

    @property
    def heads(self) -> bool:
        return self.structured in ("heads+ffn", "heads")

    @property
    def ffn(self) -> bool:
        return self.structured in ("heads+ffn", "ffn")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DistillationConfig:
    """Knowledge distillation from ``teacher`` (a model object or a model folder of the same task).

    loss = (1 - alpha) * task loss + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
    (+ ``hidden_weight`` * MSE of hidden states, layer for layer, where their shapes match, when
    ``hidden_states``).
    """

    teacher: Any
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_states: bool = False
    hidden_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.teacher is None:
            raise TrainingConfigError("DistillationConfig needs a teacher: a transformers model or the path of a model folder")
        if not self.temperature > 0:
            raise TrainingConfigError(f"DistillationConfig.temperature must be > 0 (2.0 is common), not {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise TrainingConfigError(f"DistillationConfig.alpha must be in [0, 1] (the weight of the teacher's term), not {self.alpha}")
        if self.hidden_weight < 0:
            raise TrainingConfigError(f"DistillationConfig.hidden_weight must be >= 0, not {self.hidden_weight}")

    def to_dict(self) -> dict[str, Any]:
        teacher = self.teacher if isinstance(self.teacher, str) else getattr(self.teacher, "name_or_path", type(self.teacher).__name__)
        return {"teacher": str(teacher), "temperature": self.temperature, "alpha": self.alpha,
                "hidden_states": self.hidden_states, "hidden_weight": self.hidden_weight}
