"""``ManagedSession``: one graph for OpenVINO whose compiled model can be (re)built on demand.

What optimum-intel users do between loading and running lives here: compile later
(``compile=False`` then ``compile()`` or the first call), reshape to static shapes, fp16 weights
(``half()``), another device (``to("GPU")``), int8 weights at load (``load_in_8bit``), the KV cache
kept inside (``stateful``), computing only some outputs (``outputs``). Each edit changes the
``ov.Model`` and drops the compiled model; the next call compiles again. Running is delegated to
the plain or stateful session built from it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from optibridge.artifact import STATE_KEPT_IN, Artifact, ArtifactMetadata
from optibridge.errors import ArtifactError, BackendError, InputError, first_line

from .session import OpenVINOSession
from .stateful import StatefulSession, add_logits_to_keep, cache_pairs, is_stateful, make_stateful

GRAPH_FORMATS_READ = ("onnx", "openvino-ir")  # OpenVINO reads both
KV_CACHE_DEFAULT = {"KV_CACHE_PRECISION": "f32"}
# A stateful decoder's KV cache is stored as u8 by default on CPU (OpenVINO 2024.4+): measured
# 0.58 max logit diff on a tiny GPT-2 and a different greedy token. f32 keeps parity; pass
# kv_cache_precision="u8" (or "f16") to trade it for memory.
KV_CACHE_DEVICES = ("CPU", "GPU")


def check_device(core: Any, device: str) -> str:
    """``device`` as OpenVINO names it; an error naming the devices this machine has when it is not one."""
    wanted = device.upper()
    available = core.available_devices
    if wanted != "AUTO" and wanted not in available and wanted.split(".")[0] not in {d.split(".")[0] for d in available}:
        raise BackendError(f"OpenVINO has no device {device!r} on this machine; its devices: {', '.join(available)} (or AUTO)")
    return wanted


class ManagedSession:
    """A graph of an artifact on an OpenVINO device; see the module docstring."""

    backend = "openvino"

    def __init__(self, core: Any, artifact: Artifact, graph: str, device: str, config: dict[str, Any], *,
                 stateful: bool | None = None, load_in_8bit: bool = False, weight_quantization: Any = None, dynamic_shapes: bool = False,
                 outputs: Sequence[str] | None = None, compile: bool = True) -> None:
        self._core = core
        self._artifact = artifact
        self._graph = graph
        self._spec = artifact.metadata.graphs[graph]
        self._path = artifact.graph_path(graph, formats=GRAPH_FORMATS_READ)
        self.ov_device = check_device(core, device)
        self.config = dict(config)
        self._model: Any = None
        self._edited = False  # compile the edited ov.Model instead of the file
        self.edits: list[str] = []  # what the user changed in memory, a phrase each: save_into() writes them out
        self.weights: str | None = None  # the weights' storage after an edit (int8, int4, float16); recorded on save
        self._inner: OpenVINOSession | None = None
        self._precision: str | None = None  # kept when the compiled model is released for openvino-genai
        self.static_shapes: dict[str, tuple[int, ...]] = {}
        self._pairs = cache_pairs(artifact, self._spec)
        extra = artifact.metadata.extra  # its own IRs record it under "openvino"; an imported optimum-intel folder, backend-neutrally
        recorded = graph in extra.get("openvino", {}).get("stateful_graphs", ()) or graph in extra.get(STATE_KEPT_IN, ())
        if stateful is False and recorded:
            raise BackendError(f"graph {graph!r} of {artifact.path} is a stateful IR (its KV cache is inside); load the ONNX "
                               "artifact it was made from to run it with stateful=False")
        if stateful and self._pairs and not recorded:
            self._edit(lambda model: None if is_stateful(model) else make_stateful(model, self._pairs))
            self.edits.append("made stateful at load (stateful=True)")
        self.stateful = bool(self._pairs) and (recorded or bool(stateful))
        if load_in_8bit:
            self._edit(_compress_int8)
            self.edits.append("int8 weights (load_in_8bit=True)")
            self.weights = "int8"
        if weight_quantization is not None:  # an optibridge QuantizationConfig: the same compression as `quantize`
            from .quantize import _nncf, _weights

            settings: dict[str, Any] = {}

            def compress(model: Any) -> Any:
                compressed, found, _ = _weights(_nncf(), model, weight_quantization)
                settings.update(found)
                return compressed

            self._edit(compress)
            shown = ", ".join(f"{k}={settings[k]}" for k in ("mode", "group_size") if k in settings)
            self.edits.append(f"int{settings['bits']} weights (quantization_config: {shown})")
            self.weights = f"int{settings['bits']}"
        if dynamic_shapes:  # optimum-intel's default; off for plain loads, which skips reading the IR twice
            self._make_named_axes_dynamic()
        self._outputs = self._spec.output_names
        if outputs is not None:
            self._keep_outputs(list(outputs))
        if compile:
            self.compile()

    # -- the Session interface ---------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.ov_device.lower()

    @property
    def input_names(self) -> list[str]:
        return self._spec.input_names

    @property
    def output_names(self) -> list[str]:
        """The graph's outputs, as the artifact describes them (``computed_outputs``: what a call returns)."""
        return self._spec.output_names

    @property
    def computed_outputs(self) -> list[str]:
        return list(self._outputs)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_static(inputs)
        return self.session().run(inputs)

    def run_step(self, inputs: Mapping[str, np.ndarray], beam_idx: np.ndarray | None = None,
                 logits_to_keep: int = 0) -> dict[str, np.ndarray]:
        return self.session().run_step(inputs, beam_idx=beam_idx, logits_to_keep=logits_to_keep)  # type: ignore[attr-defined]

    def reset(self) -> None:
        self.session().reset()  # type: ignore[attr-defined]

    def _checked_path(self) -> Any:
        """The graph file for a read now (compiled lazily or again, or by openvino-genai): checked as at load."""
        return self._artifact.graph_to_read(self._graph, formats=GRAPH_FORMATS_READ)

    def native_decoder(self, layout: Any) -> Any:
        """openvino-genai's decode loop on this graph (see :mod:`.genai`), or None where it does not apply:
        not installed, not a stateful IR read as it is, or a device other than the CPU."""
        from .genai import OpenVINOGenAIDecoder, genai_available

        if not (self.stateful and not self._edited and self._spec.format == "openvino-ir" and self.ov_device == "CPU"
                and genai_available()):
            return None
        path = self._checked_path()  # before the compiled model is freed: a changed file leaves the session as it was
        if self._inner is not None:  # free the compiled model first: peak memory is one compiled copy, not two
            self._precision = self._inner.inference_precision
            self._inner = None
        return OpenVINOGenAIDecoder(path, self.ov_device, {**KV_CACHE_DEFAULT, **self.config}, layout)

    @property
    def inference_precision(self) -> str:
        """As the compiled model reports it, without compiling again when openvino-genai took over."""
        if self._inner is None and self._precision is not None:
            return self._precision
        return str(self.session().inference_precision)

    def __getattr__(self, name: str) -> Any:  # anything else the compiled session offers (loaded_from_cache, ...)
        if name.startswith("__") or name in ("_inner", "_model"):
            raise AttributeError(name)
        return getattr(self.session(), name)

    # -- what optimum-intel exposes --------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The ``ov.Model`` (read from the file on first access)."""
        if self._model is None:
            from .convert import read_graph

            self._model = read_graph(self._artifact, self._graph)
        return self._model

    def model_input_names(self) -> list[str]:
        """Every name the ov.Model's inputs answer to (an ONNX graph's input may carry several)."""
        return sorted({name for port in self.model.inputs for name in port.get_names()})

    @property
    def is_compiled(self) -> bool:
        return self._inner is not None

    @property
    def request(self) -> Any:
        """The infer request of the compiled model; None until it is compiled."""
        return None if self._inner is None else self._inner._request

    def session(self) -> OpenVINOSession:
        """The compiled session, compiling now if needed."""
        self.compile()
        assert self._inner is not None
        return self._inner

    def compile(self) -> None:
        if self._inner is not None:
            return
        config = self.config
        if self.stateful and self.ov_device.split(".")[0] in KV_CACHE_DEVICES:
            config = {**KV_CACHE_DEFAULT, **config}
        source = self.model if self._edited else str(self._checked_path())  # a file path lets CACHE_DIR key its cache
        if self.stateful:  # a decoder for transformers' loop: the LM head projects only the positions asked for
            from .convert import read_graph

            sliced = self.model.clone() if self._edited else read_graph(self._artifact, self._graph)
            if add_logits_to_keep(sliced):
                source = sliced
        try:
            compiled = self._core.compile_model(source, self.ov_device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable models
            raise ArtifactError(f"OpenVINO could not compile {self._path} for {self.ov_device}: {first_line(exc)}") from exc
        if self.stateful:
            self._inner = StatefulSession(compiled, self.ov_device, self._spec, self._pairs)
        else:
            self._inner = OpenVINOSession(compiled, self.ov_device, set(self.input_names) | set(self.output_names))

    def reshape(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Fix input shapes (-1 keeps a dimension dynamic); compiled again on the next call."""
        self._edit(lambda model: model.reshape({name: list(shape) for name, shape in shapes.items()}))
        self.static_shapes = {name: tuple(shape) for name, shape in shapes.items() if -1 not in shape}
        self.edits.append(f"reshape({', '.join(f'{name}={list(shape)}' for name, shape in shapes.items())})")

    def half(self) -> None:
        """Weights stored as float16 (computed in the inference precision); compiled again on the next call."""
        from openvino._offline_transformations import apply_moc_transformations, compress_model_transformation

        def to_fp16(model: Any) -> None:
            apply_moc_transformations(model, cf=False)
            compress_model_transformation(model)

        self._edit(to_fp16)
        self.edits.append("float16 weights (half())")
        self.weights = "float16"

    def set_device(self, device: str) -> None:
        """Run on another OpenVINO device from the next call on (compiled again for it)."""
        wanted = check_device(self._core, device)
        if wanted != self.ov_device:
            self.ov_device = wanted
            self._inner = None

    def save_into(self, folder: Path, metadata: ArtifactMetadata) -> None:
        """Write the ``ov.Model`` as it is in memory, edits included, as IR into ``folder``, and describe
        it in ``metadata`` (its graph spec, and what the loader must know: stateful, weights)."""
        from optibridge.probing import distribution_version

        from .convert import save_graph

        spec = save_graph(self.model, folder, self._spec)
        if self._outputs != self._spec.output_names:
            spec = dataclasses.replace(spec, outputs=tuple(t for t in spec.outputs if t.name in self._outputs))
        metadata.graphs[self._graph] = spec
        facts = metadata.extra.setdefault("openvino", {})
        stateful = [g for g in facts.get("stateful_graphs", []) if g != self._graph] + ([self._graph] if self.stateful else [])
        facts.update(stateful=bool(stateful), stateful_graphs=stateful, version=distribution_version("openvino"))
        if self.weights is not None:
            facts["weights"] = self.weights

    # -- helpers ---------------------------------------------------------------------------------
    def _edit(self, change: Callable[[Any], Any]) -> None:
        result = change(self.model)
        if result is not None and hasattr(result, "get_ops"):  # NNCF returns the (same or a new) model
            self._model = result
        self._edited = True
        self._inner = None

    def _keep_outputs(self, wanted: list[str]) -> None:
        """Compile only the subgraph ``wanted`` needs: e.g. a feature extractor without its pooler head,
        which is what Optimum's feature-extraction models compute (~3 % of all-MiniLM-L6-v2 at b1 s128)."""
        have = self._spec.output_names
        unknown = [name for name in wanted if name not in have]
        if unknown or not wanted:
            raise BackendError(f"outputs={wanted!r}: graph {self._graph!r} has the outputs {', '.join(have)}; name one or more of them")
        if self.stateful:
            raise BackendError(f"outputs= applies to stateless graphs; graph {self._graph!r} keeps its KV cache inside and needs every output")
        if set(wanted) == set(have):
            return
        import openvino as ov

        def prune(model: Any) -> Any:
            results = [r for r in model.get_results() if set(r.input_value(0).get_names()) & set(wanted)]
            return ov.Model(results, model.get_parameters(), model.get_friendly_name())

        self._edit(prune)
        self._outputs = [name for name in have if name in wanted]
        self.edits.append(f"only the outputs {', '.join(self._outputs)}")

    def _make_named_axes_dynamic(self) -> None:
        """Axes the artifact records as dynamic but the file has fixed (an IR saved after a reshape)."""
        if self._spec.format != "openvino-ir" or self.stateful:
            return
        import openvino as ov

        shapes = {}
        for spec in self._spec.inputs:
            port = self.model.input(spec.name)
            fixed = port.get_partial_shape()
            if any(isinstance(axis, str) and fixed[i].is_static for i, axis in enumerate(spec.shape) if i < fixed.rank.get_length()):
                shapes[spec.name] = ov.PartialShape([-1 if isinstance(axis, str) else axis for axis in spec.shape])
        if shapes:
            self._edit(lambda model: model.reshape(shapes))

    def _check_static(self, inputs: Mapping[str, np.ndarray]) -> None:
        for name, shape in self.static_shapes.items():
            if name in inputs and tuple(inputs[name].shape) != shape:
                raise InputError(
                    f"{name} has shape {tuple(inputs[name].shape)}, but the model was reshaped to the static shape {shape}: "
                    "pad the inputs to it (padding='max_length'), or call reshape(-1, -1) for dynamic shapes"
                )


def _compress_int8(model: Any) -> Any:
    """int8 weights (NNCF's default asymmetric per-channel compression), as optimum-intel's load_in_8bit."""
    from .quantize import _nncf

    return _nncf().compress_weights(model)
