"""Accuracy-guided static int8 for OpenVINO: quantize every MatMul once (the plan by role of
:mod:`.quantize`), then put back in float only the FFN down-projections the validation needs,
most harmful first.

Why: quantizing the FFN down-projections is what makes int8 static fast (Optimum quantizes them
all), and also what produces its worst cases (their GELU/SiLU inputs have outlier ranges). Which
of them hurt depends on the model, so it is measured, not guessed: each candidate's effect is the
per-sample cosine to the float model after bypassing only its FakeQuantize nodes in the already
quantized graph (no new NNCF run, one compile per candidate). The candidates are
put back in float in order of that sensitivity until the worst validation sample reaches the
target. The validation samples are the calibration samples themselves (the user's data, never a
benchmark's evaluation set): their float outputs are the reference.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from optibridge.errors import BackendError

DEFAULT_MIN_COSINE = 0.99
"""Per-sample cosine to the float graph that the worst validation sample must reach (see docs/precision.md)."""
MAX_VALIDATION_SAMPLES = 64

Feeds = Sequence[Mapping[str, np.ndarray]]
Scorer = Callable[[Any], np.ndarray]


def _flat_outputs(results: Any, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    """Every output of one sample as one vector; token positions the attention mask hides are dropped
    (their values are arbitrary in both graphs and would drown the real ones)."""
    mask = feed.get("attention_mask")
    parts = []
    for value in results.values():
        array = np.asarray(value, dtype=np.float64)
        if mask is not None and array.ndim >= 2 and array.shape[:2] == mask.shape:
            array = array[mask.astype(bool)]
        parts.append(array.ravel())
    return np.concatenate(parts)


def cosine_scorer(float_model: Any, feeds: Feeds, precision: str | None) -> Scorer:
    """A function giving, for an OpenVINO model, the cosine of each sample's outputs to ``float_model``'s (f32)."""
    import openvino as ov

    core = ov.Core()
    names = {port.get_any_name() for port in float_model.inputs}
    inputs = [{k: v for k, v in feed.items() if k in names} for feed in feeds]

    def run(model: Any, hint: str) -> list[np.ndarray]:
        request = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint}).create_infer_request()
        return [_flat_outputs({i: v for i, v in enumerate(request.infer(feed).values())}, feed) for feed in inputs]

    reference = run(float_model, "f32")

    def score(model: Any) -> np.ndarray:
        got = run(model, precision or "f32")
        return np.array([float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0)) for a, b in zip(got, reference)])

    return score


def bypass_quantization(model: Any, matmuls: Sequence[str]) -> Any:
    """A copy of ``model`` whose named MatMuls take their inputs unquantized (their FakeQuantize nodes skipped)."""
    copy = model.clone()
    wanted = set(matmuls)
    for op in copy.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_friendly_name() not in wanted:
            continue
        for port in op.inputs():
            producer = port.get_source_output().get_node()
            if producer.get_type_name() == "FakeQuantize":
                port.replace_source_output(producer.input_value(0))
    copy.validate_nodes_and_infer_types()
    return copy


def _summary(cosines: np.ndarray) -> dict[str, float]:
    return {"min_cosine": round(float(cosines.min()), 5), "mean_cosine": round(float(cosines.mean()), 5)}


def keep_sensitive_in_float(quantized: Any, candidates: Sequence[str], score: Scorer, target: float,
                            hint: str = "", scored: np.ndarray | None = None, required: bool = True) -> tuple[Any, dict[str, Any]]:
    """Bypass the quantization of ``candidates`` one by one, most harmful first, until the worst sample
    reaches ``target``; the model and a record (what stayed in float, the validation figures). ``hint``
    is added to the error when the target is out of reach (why it may be, on this machine); ``scored``
    is ``score(quantized)`` when the caller has it already. A target the user did not set
    (``required`` False) is a goal: out of reach, the most accurate model tried is returned with
    ``target_reached`` False in the record instead of an error."""
    record: dict[str, Any] = {"target_min_cosine": target, "candidates": len(candidates), "kept_in_float": [], "target_reached": True}
    all_int8 = score(quantized) if scored is None else scored
    record["all_quantized"] = _summary(all_int8)
    if all_int8.min() >= target:
        record["validation"] = record["all_quantized"]
        return quantized, record
    # Sensitivity of each candidate alone: how far bypassing it lifts the worst and the mean sample.
    alone = {name: score(bypass_quantization(quantized, [name])) for name in candidates}
    order = sorted(candidates, key=lambda n: (-alone[n].min(), -alone[n].mean()))
    record["sensitivity"] = {name: _summary(alone[name]) for name in order}
    kept: list[str] = []
    record["path"] = []
    cosines = all_int8  # what the error reports when there is no candidate to put back
    for name in order:
        kept.append(name)
        model = bypass_quantization(quantized, kept)
        cosines = score(model)
        record["path"].append(_summary(cosines))  # the figures after each one put back: what a lower target would give
        if cosines.min() >= target:
            record.update(kept_in_float=kept, validation=_summary(cosines))
            return model, record
    if not required:
        record.update(kept_in_float=kept, validation=_summary(cosines), target_reached=False)
        return (model if kept else quantized), record  # every candidate in float: the most accurate tried
    tried = f"even with all {len(candidates)} FFN down-projection(s) in float" if candidates else "with every MatMul in int8 (no FFN down-projection to keep in float)"
    raise BackendError(
        f"{tried} the worst calibration sample reaches cosine "
        f"{cosines.min():.5f} to the float model, below the target {target}{hint}: lower it (--min-cosine {np.floor(cosines.min() * 1000) / 1000:.3f}), "
        "keep more nodes in float (--exclude-nodes, --exclude-ops), or use --mode dynamic")
