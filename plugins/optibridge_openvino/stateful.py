"""Stateful decoder models: the KV cache kept inside the compiled OpenVINO model.

``make_stateful`` rewrites a decoder graph the way optimum-intel does: a ``beam_idx`` input
gathers the cache rows each sequence continues from (beam search reorders them between steps),
then OpenVINO's MakeStateful pass turns every ``past_key_values.*`` input / ``present.*`` output
pair into a ReadValue/Assign variable whose initial value is an empty cache of the batch's size.

:class:`StatefulSession` runs such a model. ``run_step`` is the fast path (no cache tensors cross
the API); plain ``run`` still takes ``past_*`` inputs and returns ``present.*`` outputs by loading
them into the state and reading it back, so the model stands in for the stateless graph wherever
one is expected (the accuracy check of ``optimize``/``quantize``).

``add_logits_to_keep`` gives the compiled model a ``logits_to_keep`` input (transformers' forward
argument of that name): the LM head then projects only the last k positions (0: all). generate()
asks for 1, so a prompt's prefill no longer multiplies every position by the vocabulary matrix
(GPT-2-small, int8 weights, 2-core EPYC: prefill 94.7 → 76.0 ms at 32 tokens, 765 → 544 ms at 256).
The artifact's file is not changed: openvino-genai, which does the same itself, reads it as it is.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from optibridge.artifact import Artifact, GraphSpec
from optibridge.backend import LOGITS_TO_KEEP
from optibridge.errors import InputError
from optibridge.tasks import TASKS

from .session import OpenVINOSession

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."
BEAM_IDX = "beam_idx"
# Ops between the LM head's MatMul and the logits that work position by position (a bias, a
# soft-cap, a cast), so slicing the positions before the MatMul slices the logits the same way.
_POSITIONWISE = frozenset({"Add", "Subtract", "Multiply", "Divide", "Tanh", "Convert"})


def cache_pairs(artifact: Artifact, spec: GraphSpec) -> dict[str, str]:
    """``past_key_values.i.key`` → ``present.i.key`` for a decoder LM graph with a KV cache, else empty."""
    task = TASKS.get(artifact.metadata.task)
    if task is None or task.kind != "decoder" or not artifact.metadata.extra.get("use_cache"):
        return {}
    pairs = {name: PRESENT_PREFIX + name[len(PAST_PREFIX):] for name in spec.input_names if name.startswith(PAST_PREFIX)}
    return pairs if pairs and all(out in spec.output_names for out in pairs.values()) else {}


def is_stateful(model: Any) -> bool:
    return bool(model.get_sinks())


def make_stateful(model: Any, pairs: dict[str, str], batch_input: str = "input_ids") -> None:
    """Keep the KV cache inside ``model`` (in place); see the module docstring."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    main = model.input(batch_input)
    beam_idx = ops.parameter(ov.PartialShape([main.get_partial_shape()[0]]), ov.Type.i32, name=BEAM_IDX)
    beam_idx.output(0).get_tensor().set_names({BEAM_IDX})
    model.add_parameters([beam_idx])
    for name in pairs:
        port = model.input(name)
        consumers = port.get_target_inputs()
        gather = ops.gather(port, beam_idx, ops.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(gather.output(0))
    model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(model, pairs)
    # Without an initializer a variable starts with batch 0; start each sequence with an empty
    # cache (past length 0) of the batch size input_ids has.
    batch = ops.gather(ops.shape_of(main, output_type="i64"), ops.constant([0]), ops.constant(0))
    for op in model.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [d.min_length for d in op.get_output_partial_shape(0)]
            parts = [batch] + [ops.constant(np.array([d], dtype=np.int64)) for d in dims[1:]]
            zeros = ops.broadcast(ops.constant(0.0, dtype=op.get_output_element_type(0)), ops.concat(parts, axis=0))
            op.set_arguments([zeros])
    model.validate_nodes_and_infer_types()


def _from_constants(value: Any, depth: int = 6) -> bool:
    """Whether ``value`` is computed from constants alone (a weight, possibly decompressed: Convert, Subtract, Multiply)."""
    node = value.get_node()
    if node.get_type_name() == "Constant":
        return True
    return depth > 0 and node.get_input_size() > 0 and all(_from_constants(v, depth - 1) for v in node.input_values())


def _same_for_every_position(value: Any) -> bool:
    """A constant operand that broadcasts over the positions axis (a per-vocabulary bias, a scalar)."""
    shape = value.get_partial_shape()
    return shape.rank.is_static and (shape.rank.get_length() < 2 or shape[shape.rank.get_length() - 2] == 1)


def lm_head(model: Any) -> Any | None:
    """The MatMul that projects hidden states (batch, positions, hidden) onto the vocabulary for the
    ``logits`` output, through position-wise ops only; None when the graph is not built that way."""
    result = next((r for r in model.get_results() if "logits" in r.input_value(0).get_names()), None)
    if result is None:
        return None
    node = result.input_value(0).get_node()
    while node.get_type_name() in _POSITIONWISE:
        computed = [v for v in node.input_values() if not _from_constants(v)]
        constant = [v for v in node.input_values() if _from_constants(v)]
        if len(computed) != 1 or not all(_same_for_every_position(v) for v in constant):
            return None
        node = computed[0].get_node()
    if node.get_type_name() != "MatMul" or node.get_attributes().get("transpose_a"):
        return None
    hidden, weight = node.input_value(0), node.input_value(1)
    rank = hidden.get_partial_shape().rank
    if not (rank.is_static and rank.get_length() == 3 and _from_constants(weight)):
        return None
    return node


def add_logits_to_keep(model: Any) -> bool:
    """Add the ``logits_to_keep`` input (int64, shape [1]; see the module docstring) to ``model``, in
    place; False (and ``model`` unchanged) when it has one already or its LM head is not found."""
    import openvino as ov
    import openvino.opset13 as ops

    if any(LOGITS_TO_KEEP in port.get_names() for port in model.inputs):
        return False
    head = lm_head(model)
    if head is None:
        return False
    keep = ops.parameter(ov.PartialShape([1]), ov.Type.i64, name=LOGITS_TO_KEEP)
    keep.output(0).get_tensor().set_names({LOGITS_TO_KEEP})
    # hidden[:, -k:, :] as transformers slices it: k = 0 starts at 0 (every position), k past the length clamps.
    last = ops.slice(head.input_value(0), ops.negative(keep), ops.constant(np.array([np.iinfo(np.int64).max])),
                     ops.constant(np.array([1])), ops.constant(np.array([1])))
    head.input(0).replace_source_output(last.output(0))
    model.add_parameters([keep])
    model.validate_nodes_and_infer_types()
    return True


class StatefulSession(OpenVINOSession):
    """A stateful decoder: described (``input_names``/``output_names``) by its stateless interface.

    The KV cache lives in one request's state, so this session serves one sequence at a time: every
    call holds :attr:`lock` (threads are serialized, never interleaved inside a call), and
    :func:`optibridge.modeling.stateful.stateful_step` refuses a step that does not continue the
    session's latest sequence. For concurrent generation, load one model per thread.
    """

    stateful = True

    def __init__(self, compiled: Any, device: str, spec: GraphSpec, pairs: dict[str, str]) -> None:
        super().__init__(compiled, device, set(spec.input_names) | set(spec.output_names) | {BEAM_IDX, LOGITS_TO_KEEP})
        self.lock = threading.RLock()
        self._spec = spec
        self._pairs = pairs
        states = {state.name: state for state in self._request.query_state()}
        # MakeStateful names each variable after its pair: "<input name><output name>".
        self._states = {past: states[past + present] for past, present in pairs.items()}
        self.slices_logits = LOGITS_TO_KEEP in self._inputs
        """Whether the compiled model computes only the logits asked for (see :func:`add_logits_to_keep`)."""

    @property
    def input_names(self) -> list[str]:
        return self._spec.input_names

    @property
    def output_names(self) -> list[str]:
        return self._spec.output_names

    def reset(self) -> None:
        """Forget the cache: the next step starts a new sequence."""
        with self.lock:
            self._request.reset_state()

    def _infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:  # the state belongs to this one request: never a pooled one
            return self._infer_on(self._request, inputs)

    def run_step(self, inputs: Mapping[str, np.ndarray], beam_idx: np.ndarray | None = None,
                 logits_to_keep: int = 0) -> dict[str, np.ndarray]:
        """One decoding step on the kept cache; ``beam_idx`` (default: each row its own) reorders it
        first; ``logits_to_keep``: logits of the last that many positions only (0: all)."""
        batch = next(iter(inputs.values())).shape[0]
        order = np.arange(batch, dtype=np.int32) if beam_idx is None else np.asarray(beam_idx, dtype=np.int32)
        feed = {**inputs, BEAM_IDX: order}
        if self.slices_logits:
            feed[LOGITS_TO_KEEP] = np.array([logits_to_keep], dtype=np.int64)
        outputs = self._infer(feed)
        if logits_to_keep > 0 and not self.slices_logits:
            outputs["logits"] = outputs["logits"][:, -logits_to_keep:]
        return outputs

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stateless use: loads the given cache into the state, runs, reads it back, all under the lock."""
        import openvino as ov

        missing = [name for name in self._pairs if name not in inputs]
        if missing:
            raise InputError(f"run() on a stateful model takes the cache inputs too (missing {missing[0]}); use run_step() to keep the cache inside")
        with self.lock:
            for past in self._pairs:
                self._states[past].state = ov.Tensor(np.ascontiguousarray(inputs[past]))
            outputs = self.run_step({k: v for k, v in inputs.items() if k not in self._pairs})
            for past, present in self._pairs.items():
                outputs[present] = np.array(self._states[past].state.data, copy=True)
        return outputs
