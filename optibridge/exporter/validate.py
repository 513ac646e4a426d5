"""Numerical comparison of an exported graph's outputs against PyTorch's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs_diff: float
    reference_shape: tuple[int, ...]
    shape: tuple[int, ...]
    passed: bool


@dataclass
class ValidationReport:
    atol: float
    backend: str
    input_shapes: dict[str, tuple[int, ...]]
    outputs: list[OutputCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs)

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs), default=float("nan"))

    def failures(self) -> list[OutputCheck]:
        return [o for o in self.outputs if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def max_abs_diff(reference: np.ndarray, actual: np.ndarray) -> float:
    """Largest absolute difference; NaN where only one side has NaN counts as infinite."""
    ref = reference.astype(np.float64)
    act = actual.astype(np.float64)
    both_nan = np.isnan(ref) & np.isnan(act)
    diff = np.abs(ref - act)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    atol: float,
    backend: str,
    input_shapes: dict[str, tuple[int, ...]],
) -> ValidationReport:
    from ..errors import ValidationError

    if not reference or any(np.size(ref) == 0 for ref in reference.values()):
        raise ValidationError(
            f"validation would compare zero elements (outputs {', '.join(f'{k} {tuple(np.shape(v))}' for k, v in reference.items()) or 'none'}, "
            f"inputs {input_shapes}); this is an internal error in the validation inputs, please report it"
        )
    report = ValidationReport(atol=atol, backend=backend, input_shapes=input_shapes)
    for name, ref in reference.items():
        got = actual.get(name)
        if got is None:
            report.outputs.append(OutputCheck(name, float("inf"), tuple(ref.shape), (), False))
            continue
        if got.shape != ref.shape:
            report.outputs.append(OutputCheck(name, float("inf"), tuple(ref.shape), tuple(got.shape), False))
            continue
        diff = max_abs_diff(ref, got)
        report.outputs.append(OutputCheck(name, diff, tuple(ref.shape), tuple(got.shape), diff <= atol))
    return report
