"""The ONNX Runtime CPU backend: loads an artifact's ``model.onnx`` into an ``InferenceSession``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from optibridge.artifact import Artifact
from optibridge.backend import Backend, BackendStatus
from optibridge.capabilities import ModeSpec
from optibridge.device import Device
from optibridge.errors import ArtifactError, BackendError, first_line

from .graphs import QUIET
from .options import VALID_OPTIONS, build_session_options

if TYPE_CHECKING:
    from optibridge.steps import CalibrationData, OptimizationConfig, QuantizationConfig

PROVIDER = "CPUExecutionProvider"


class OrtSession:
    """An ``onnxruntime.InferenceSession`` behind optibridge's Session interface."""

    backend = "ort"

    def __init__(self, session: Any, device: str = "cpu", reopen: Callable[[], Any] | None = None) -> None:
        self._session: Any = session
        self._reopen = reopen
        self.device = device
        self._input_names = [i.name for i in session.get_inputs()]
        self._output_names = [o.name for o in session.get_outputs()]
        # Inputs the graph has defaults for (an initializer of the same name, e.g. logits_to_keep): fed only when given.
        self._optional_input_names = [i.name for i in session.get_overridable_initializers()]
        self.native_decoder: Any = None  # a decoder LM's onnxruntime-genai loop factory (see .genai), set by load()

    @property
    def session(self) -> Any:
        """The ``InferenceSession``, created again on first use after :meth:`release`."""
        if self._session is None:
            if self._reopen is None:
                raise BackendError("this ONNX Runtime session was released and cannot be reopened")
            self._session = self._reopen()
        return self._session

    def release(self) -> bool:
        """Free the ``InferenceSession`` (its copy of the weights) where it can be created again from the
        artifact; a native decode loop that loads the same graph calls this first, so a process holds one
        copy of the weights, not two. Returns whether it was released."""
        if self._reopen is None:
            return False
        self._session = None
        return True

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    @property
    def optional_input_names(self) -> list[str]:
        return list(self._optional_input_names)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, dict(inputs))
        return dict(zip(self._output_names, values))


CORRUPT_FILE_FIX = "The file is corrupt or incomplete; re-export it with `optibridge export`"


def create_session(ort: Any, path: Path, session_options: Any, providers: list[Any], fix: str = CORRUPT_FILE_FIX) -> Any:
    """An ``InferenceSession`` on ``path`` (shared with the CUDA plugin); a failure is an ArtifactError ending with ``fix``."""
    try:
        return ort.InferenceSession(str(path), session_options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph types
        raise ArtifactError(f"ONNX Runtime could not load {path}: {first_line(exc)}. {fix}") from exc


MODES = (
    ModeSpec("dynamic", "int8 weights, activations quantized at run time (no calibration needed)", "int8",
             uses_samples=True, cpu_preset=True),
    ModeSpec("static", "int8 weights and activations (QDQ), activation ranges from calibration data", "int8",
             needs_calibration=True, uses_samples=True, cpu_preset=True),
    ModeSpec("int4", "int4 weight-only (MatMulNBits), for memory-bound decoder LMs", "int4 weights", weight_only=True),
)


class OrtBackend(Backend):
    name = "ort"
    description = "ONNX Runtime, CPU execution provider"
    priority = 10
    uses_cpu_presets = True
    modes = MODES
    threads_option = "intra_op_num_threads"

    def status(self) -> BackendStatus:
        if importlib.util.find_spec("onnxruntime") is None:
            return BackendStatus(self.name, False, reason="onnxruntime is not installed: pip install optibridge[ort]")
        import onnxruntime as ort

        providers = ort.get_available_providers()
        if PROVIDER not in providers:
            return BackendStatus(
                self.name, False, version=ort.__version__,
                reason=f"this onnxruntime build has no {PROVIDER} (it has {', '.join(providers)})",
            )
        return BackendStatus(
            self.name, True, devices=("cpu",), version=ort.__version__, features=("run", "optimize", "quantize"),
            details={"providers": providers},
        )

    def option_names(self) -> frozenset[str]:
        return frozenset((*VALID_OPTIONS, "io_binding", "provider_options"))

    def load(self, artifact: Artifact, *, graph: str = "model", device: str = "cpu", **options: Any) -> OrtSession:
        """Options: ORT session options (see :mod:`.options`), ``io_binding`` (True: torch tensors in and
        out through IO binding, no numpy copies) and ``provider_options`` (the CPU provider takes none)."""
        io_binding = options.pop("io_binding", None)
        provider_options = options.pop("provider_options", None)
        if provider_options:
            # ONNX Runtime would drop them without a word: its CPU provider reads no provider options.
            raise BackendError(
                f"the CPU execution provider takes no provider options (got {', '.join(map(str, provider_options))}); "
                "CPU settings are session options (session_options=, intra_op_num_threads=, ...)"
            )
        if Device.parse(device).kind != "cpu":
            raise BackendError(
                f"backend 'ort' runs on the CPU only, not on {device!r}; "
                "for an NVIDIA GPU use backend='cuda', for Intel GPUs/NPUs backend='openvino'"
            )
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("onnxruntime is not installed: pip install optibridge[ort]") from exc
        if artifact.metadata.graphs[graph].optional_inputs and options.get("log_severity_level") is None:
            # ONNX Runtime warns on every load that an input with a default (logits_to_keep) is not constant-folded:
            # that is the point of it, so only errors are logged unless the caller chose a level.
            options["log_severity_level"] = QUIET

        def open_session() -> Any:  # also when created again after release(): the file is checked as at load
            return create_session(ort, artifact.graph_to_read(graph), build_session_options(ort, options), [PROVIDER])

        session = open_session()
        if io_binding:
            from .binding import IOBindingSession

            return IOBindingSession(session, device="cpu")
        plain = OrtSession(session, device="cpu", reopen=open_session)
        if artifact.metadata.task == "text-generation" and artifact.metadata.extra.get("use_cache"):
            from .genai import native_decoder_factory

            plain.native_decoder = native_decoder_factory(artifact, graph, options.get("intra_op_num_threads"), plain.release)
        return plain

    def optimize(self, artifact: Artifact, config: "OptimizationConfig", output_dir: Path) -> dict[str, Any]:
        from .graphs import scratch_inside
        from .optimize import optimize_artifact

        with scratch_inside(output_dir):  # ORT's helpers write temp files: keep them in the staging folder
            return optimize_artifact(artifact, config, output_dir)

    def quantize(
        self, artifact: Artifact, config: "QuantizationConfig", output_dir: Path, calibration: "CalibrationData | None" = None,
    ) -> dict[str, Any]:
        from .graphs import scratch_inside
        from .quantize import quantize_artifact

        with scratch_inside(output_dir):  # ORT's helpers write temp files: keep them in the staging folder
            return quantize_artifact(artifact, config, output_dir, calibration)
