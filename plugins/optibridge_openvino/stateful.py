"""Stateful decoder models: the KV cache kept inside the compiled OpenVINO model.

``make_stateful`` rewrites a decoder graph the way optimum-intel does: a ``beam_idx`` input
gathers the cache rows each sequence continues from (beam search reorders them between steps),
then OpenVINO's MakeStateful pass turns every ``past_key_values.*`` input / ``present.*`` output
pair into a ReadValue/Assign variable whose initial value is an empty cache of the batch's size.

:class:`StatefulSession` runs such a model. ``run_step`` is the fast path (no cache tensors cross
the API); plain ``run`` still takes ``past_*`` inputs and returns ``present.*`` outputs by loading
them into the state and reading it back, so the model stands in for the stateless graph wherever
one is expected (the accuracy check of ``optimize``/``quantize``).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from optibridge.artifact import Artifact, GraphSpec
from optibridge.errors import InputError

from .session import OpenVINOSession

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."
BEAM_IDX = "beam_idx"


def cache_pairs(artifact: Artifact, spec: GraphSpec) -> dict[str, str]:
    """``past_key_values.i.key`` → ``present.i.key`` for a decoder LM graph with a KV cache, else empty."""
    if artifact.metadata.task != "text-generation" or not artifact.metadata.extra.get("use_cache"):
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


class StatefulSession(OpenVINOSession):
    """A stateful decoder: described (``input_names``/``output_names``) by its stateless interface.

    The KV cache lives in one request's state, so this session serves one sequence at a time: every
    call holds :attr:`lock` (threads are serialized, never interleaved inside a call), and
    :func:`optibridge.modeling.stateful.stateful_step` refuses a step that does not continue the
    session's latest sequence. For concurrent generation, load one model per thread.
    """

    stateful = True

    def __init__(self, compiled: Any, device: str, spec: GraphSpec, pairs: dict[str, str]) -> None:
        super().__init__(compiled, device, set(spec.input_names) | set(spec.output_names) | {BEAM_IDX})
        self.lock = threading.RLock()
        self._spec = spec
        self._pairs = pairs
        states = {state.name: state for state in self._request.query_state()}
        # MakeStateful names each variable after its pair: "<input name><output name>".
        self._states = {past: states[past + present] for past, present in pairs.items()}

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

    def run_step(self, inputs: Mapping[str, np.ndarray], beam_idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One decoding step on the kept cache; ``beam_idx`` (default: each row its own) reorders it first."""
        batch = next(iter(inputs.values())).shape[0]
        order = np.arange(batch, dtype=np.int32) if beam_idx is None else np.asarray(beam_idx, dtype=np.int32)
        return self._infer({**inputs, BEAM_IDX: order})

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
