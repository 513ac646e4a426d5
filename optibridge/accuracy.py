"""Accuracy of a transformed graph against its float32 reference: numpy only, reusable by any command.

Per output: the largest absolute difference, the cosine similarity of each output vector (its last
axis: one hidden state, one row of logits) to the reference's, and for logits the share of
vectors whose arg-max (top-1 class or token) is unchanged.

Positions that are padding (``attention_mask == 0``) are left out for outputs that carry a
sequence axis (``last_hidden_state``, token logits): no pooling or head reads them, and
quantized graphs legitimately differ there.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import OptibridgeError

class EmptyComparisonError(OptibridgeError):
    """An accuracy figure would be computed over zero elements (empty inputs, no outputs): never a pass."""


TOP1_SUFFIX = "logits"
"""Outputs whose name ends with this (logits, start_logits, end_logits) also get a top-1 agreement."""


@dataclass(frozen=True)
class OutputAccuracy:
    name: str
    max_abs_diff: float
    cosine_mean: float
    cosine_min: float
    vectors: int
    """How many vectors (rows along the last axis) were compared."""
    top1_agreement: float | None = None

    def describe(self) -> str:
        text = f"{self.name}: max abs diff {self.max_abs_diff:.3g}, cosine mean {self.cosine_mean:.4f} (min {self.cosine_min:.4f})"
        if self.top1_agreement is not None:
            text += f", top-1 agreement {self.top1_agreement:.1%}"
        return text


@dataclass
class AccuracyReport:
    """How close a graph's outputs are to the reference's on the same inputs."""

    outputs: list[OutputAccuracy] = field(default_factory=list)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: str = ""
    """Where the inputs came from (e.g. "14 sentences through the artifact's tokenizer")."""

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs), default=float("nan"))

    @property
    def cosine(self) -> float:
        """The worst output's mean cosine: what an accuracy budget on cosine is held to."""
        return min((o.cosine_mean for o in self.outputs), default=float("nan"))

    @property
    def top1(self) -> float | None:
        values = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AccuracyReport":
        return cls(
            outputs=[OutputAccuracy(**o) for o in data.get("outputs", [])],
            input_shapes={k: tuple(v) for k, v in data.get("input_shapes", {}).items()},
            inputs=data.get("inputs", ""),
        )


def _vectors(array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The output as a 2-D array of vectors along its last axis, padding positions removed."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    if mask is not None and array.ndim > mask.ndim and array.shape[: mask.ndim] == mask.shape:
        array = array[mask.astype(bool)]
    return array.reshape(-1, array.shape[-1])


def cosine_rows(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows; two zero rows count as identical, one zero row as 0."""
    dot = np.sum(reference * actual, axis=-1)
    norms = np.linalg.norm(reference, axis=-1) * np.linalg.norm(actual, axis=-1)
    both_zero = (np.linalg.norm(reference, axis=-1) == 0) & (np.linalg.norm(actual, axis=-1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def compare_output(name: str, reference: np.ndarray, actual: np.ndarray | None, mask: np.ndarray | None = None) -> OutputAccuracy:
    if actual is None or np.shape(actual) != np.shape(reference):
        return OutputAccuracy(name, float("inf"), 0.0, 0.0, 0, 0.0 if name.endswith(TOP1_SUFFIX) else None)
    ref = _vectors(reference, mask)
    got = _vectors(actual, mask)
    if ref.size == 0:
        raise EmptyComparisonError(
            f"accuracy of {name} would be measured over zero elements (output shape {tuple(np.shape(reference))}"
            f"{'' if mask is None else f', {int(np.count_nonzero(mask))} real tokens'}): a figure over nothing is no "
            "evidence. The inputs were empty (a tokenizer that yields no tokens?); give inputs with real tokens"
        )
    diff = np.abs(ref - got)
    diff[np.isnan(diff)] = np.inf
    cos = cosine_rows(ref, got)
    cos[np.isnan(cos)] = 0.0
    top1 = None
    if name.endswith(TOP1_SUFFIX):
        top1 = float(np.mean(np.argmax(ref, axis=-1) == np.argmax(got, axis=-1)))
    return OutputAccuracy(name, float(diff.max()), float(cos.mean()), float(cos.min()), int(ref.shape[0]), top1)


def compare(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    mask: np.ndarray | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    inputs: str = "",
) -> AccuracyReport:
    """Compare every reference output with the same-named actual output (missing or reshaped: worst score).

    Comparing nothing (no outputs, or outputs with zero elements) raises :class:`EmptyComparisonError`."""
    if not reference:
        raise EmptyComparisonError("no outputs to compare: an accuracy figure over nothing is no evidence")
    return AccuracyReport(
        outputs=[compare_output(name, ref, actual.get(name), mask) for name, ref in reference.items()],
        input_shapes={k: tuple(v) for k, v in (input_shapes or {}).items()},
        inputs=inputs,
    )


_BUDGET_TERM = re.compile(r"^\s*(cosine|top1|top-1|max[-_]abs[-_]diff|psnr)\s*(>=|<=|=)?\s*([0-9.eE+-]+)\s*$")
BUDGET_HELP = ("cosine>=0.99, top1>=0.98, max-abs-diff<=1e-3 (comma-separated; a bare number means cosine); "
               "psnr>=35 for a diffusion pipeline's images")


@dataclass(frozen=True)
class AccuracyBudget:
    """The least accuracy a step must keep; a step that misses it fails and writes nothing."""

    min_cosine: float | None = None
    """Lowest allowed mean cosine, for every output."""
    min_top1: float | None = None
    """Lowest allowed top-1 agreement (0-1), for every logits output."""
    max_abs_diff: float | None = None
    """Largest allowed absolute difference, on any output."""
    min_psnr_db: float | None = None
    """Diffusion pipelines: lowest allowed PSNR (dB) of the images against the reference pipeline's."""

    def __post_init__(self) -> None:
        for name in ("min_cosine", "min_top1"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                raise OptibridgeError(f"accuracy budget {name}={value} is outside [-1, 1]; e.g. cosine>=0.99")
        if self.max_abs_diff is not None and self.max_abs_diff < 0:
            raise OptibridgeError(f"accuracy budget max_abs_diff={self.max_abs_diff} must be >= 0")

    @classmethod
    def parse(cls, text: str) -> "AccuracyBudget":
        """``"0.99"``, ``"cosine>=0.99"``, ``"cosine>=0.99,top1>=0.98,max-abs-diff<=1e-3"``."""
        values: dict[str, float] = {}
        for term in filter(None, (t.strip() for t in text.split(","))):
            try:
                values["min_cosine"] = float(term)
                continue
            except ValueError:
                pass
            match = _BUDGET_TERM.match(term.lower())
            if match is None:
                raise OptibridgeError(f"cannot read accuracy budget term {term!r}; write {BUDGET_HELP}")
            key, _, number = match.groups()
            try:
                value = float(number)
            except ValueError:
                raise OptibridgeError(f"accuracy budget term {term!r}: {number!r} is not a number") from None
            target = {"cosine": "min_cosine", "top1": "min_top1", "top-1": "min_top1", "psnr": "min_psnr_db"}.get(key, "max_abs_diff")
            values[target] = value
        if not values:
            raise OptibridgeError(f"empty accuracy budget; write {BUDGET_HELP}")
        return cls(**values)

    def violations(self, report: AccuracyReport) -> list[str]:
        """What the report misses, one phrase per output and criterion; empty when within budget."""
        found = []
        for out in report.outputs:
            if self.min_cosine is not None and out.cosine_mean < self.min_cosine:
                found.append(f"{out.name} cosine {out.cosine_mean:.4f} < {self.min_cosine}")
            if self.min_top1 is not None and out.top1_agreement is not None and out.top1_agreement < self.min_top1:
                found.append(f"{out.name} top-1 {out.top1_agreement:.3f} < {self.min_top1}")
            if self.max_abs_diff is not None and out.max_abs_diff > self.max_abs_diff:
                found.append(f"{out.name} max abs diff {out.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        return found

    @property
    def judges_images(self) -> bool:
        """Whether the budget holds a PSNR term, the one that applies to a pipeline's images."""
        return self.min_psnr_db is not None

    def image_violations(self, psnr_db: float | None) -> list[str]:
        """What a pipeline's images miss (PSNR against the reference's, inf when identical); empty when within budget."""
        if self.min_psnr_db is None:
            return []
        if psnr_db is None:
            return ["no image PSNR measured"]
        return [f"images PSNR {psnr_db:.1f} dB < {self.min_psnr_db:g}"] if psnr_db < self.min_psnr_db else []

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AccuracyBudget":
        return cls(**dict(data))

    def describe(self) -> str:
        parts = []
        if self.min_cosine is not None:
            parts.append(f"cosine>={self.min_cosine}")
        if self.min_top1 is not None:
            parts.append(f"top1>={self.min_top1}")
        if self.max_abs_diff is not None:
            parts.append(f"max-abs-diff<={self.max_abs_diff:g}")
        if self.min_psnr_db is not None:
            parts.append(f"psnr>={self.min_psnr_db:g}")
        return ",".join(parts)
