"""What a backend plugin provides: a :class:`Backend` that loads artifacts into :class:`Session` objects.

The core only ever talks to these two types; it never imports a runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, TypedDict, runtime_checkable

import numpy as np

from .capabilities import ModeSpec

if TYPE_CHECKING:
    from .artifact import Artifact, GraphSpec
    from .configs import CalibrationData, OptimizationConfig, QuantizationConfig


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, on which devices, and — when it cannot — exactly why."""

    name: str
    available: bool
    devices: tuple[str, ...] = ()
    reason: str | None = None
    """Why it is not available, phrased as what is missing and how to get it."""
    version: str | None = None
    """Version of the runtime behind the backend (e.g. onnxruntime's)."""
    features: tuple[str, ...] = ()
    """What it implements: "run", "optimize", "quantize", ..."""
    details: dict[str, Any] = field(default_factory=dict)


class GraphReport(TypedDict, total=False):
    """What a step did to one graph."""

    fused: dict[str, int]
    """Optimize: new operators per type (e.g. ``{"Attention": 2}``)."""
    quantized: dict[str, int]
    """Quantize: new quantized operators per type."""
    attention_fused: bool
    notes: list[str]


class StepReport(TypedDict, total=False):
    """What :meth:`Backend.optimize` / :meth:`Backend.quantize` return (recorded in ``optibridge.json``)."""

    graphs: dict[str, GraphReport]
    settings: dict[str, Any]
    """What was actually applied (resolved defaults included)."""
    notes: list[str]
    specs: dict[str, "GraphSpec"]
    """New :class:`~optibridge.artifact.GraphSpec` per graph, for a backend that writes another format."""
    metadata_extra: dict[str, Any]
    """Facts a loader needs, merged into the metadata's ``extra``."""


@runtime_checkable
class Session(Protocol):
    """A loaded model, ready to run: numpy arrays in, numpy arrays out, by name."""

    backend: str
    device: str

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph. ``inputs`` holds exactly the graph's inputs, plus any of the optional ones the
        session lists (see :func:`takes_optional_input`); the result maps every output name."""
        ...


LOGITS_TO_KEEP = "logits_to_keep"
"""The optional decoder input (and ``run_step`` argument) that limits the logits to the last k positions."""


def takes_optional_input(session: Any, name: str) -> bool:
    """Whether ``session.run`` accepts ``name`` beside the graph's inputs: an input the graph has a
    default for (ONNX: an initializer of that name, like ``logits_to_keep``). A session lists them as
    ``optional_input_names``; one without that attribute takes none."""
    return name in getattr(session, "optional_input_names", ())



@runtime_checkable
class StatefulSession(Protocol):
    """Optional capability of a :class:`Session` that keeps a decoder's KV cache inside (OpenVINO
    stateful models). Its plain ``run`` still takes past_* inputs and returns present.* outputs (it
    loads them into / reads them out of its state), so it can stand in for a stateless one."""

    stateful: bool
    """True when the cache lives in the session."""

    def reset(self) -> None:
        """Forget the cache (start of a new sequence)."""
        ...

    def run_step(self, inputs: Mapping[str, np.ndarray], beam_idx: np.ndarray | None = None,
                 logits_to_keep: int = 0) -> dict[str, np.ndarray]:
        """One step without past_*/present.* tensors: returns the other outputs; ``beam_idx``
        (int32, batch) picks which row of the cache each row continues from; ``logits_to_keep`` > 0:
        ``logits`` of the last that many positions only (a session may then skip computing the
        others, as transformers' models do), 0: of every position."""
        ...


@runtime_checkable
class TorchSession(Protocol):
    """Optional capability of a :class:`Session` on an accelerator (CUDA IO binding, Gaudi).

    ``run_torch`` takes and returns torch tensors that stay in device memory (inputs not on the
    session's device are moved there; outputs are on it), so a KV cache or the logits never pass
    through host memory between steps. ``Session.device`` must then be a torch device string
    ("cuda:1", "hpu") because the model reports it as ``model.device``.
    """

    accepts_torch: bool
    """True when :meth:`run_torch` may be used (a session may have the method but not the means)."""

    def run_torch(self, inputs: Mapping[str, Any]) -> dict[str, Any]: ...


def is_stateful(session: object) -> bool:
    """Whether ``session`` keeps the KV cache itself (a :class:`StatefulSession` that says so)."""
    return isinstance(session, StatefulSession) and bool(session.stateful)


def torch_runner(session: object) -> Callable[[Mapping[str, Any]], dict[str, Any]] | None:
    """The session's ``run_torch`` when it is a :class:`TorchSession` that accepts torch, else None (use ``run``)."""
    # Plain attribute reads, not isinstance(session, TorchSession): a runtime Protocol check costs
    # ~30 us per call with cold caches, a few percent of a batch-1 encoder call.
    if getattr(session, "accepts_torch", False):
        run: Callable[[Mapping[str, Any]], dict[str, Any]] | None = getattr(session, "run_torch", None)
        return run if callable(run) else None
    return None


class Backend(ABC):
    """A runtime that can run optibridge artifacts. Subclass it in a plugin and return an instance
    from the ``optibridge_backends`` hook (see :mod:`optibridge.hookspecs`)."""

    name: str
    description: str = ""
    priority: int = 100
    """Lower runs first when ``backend="auto"`` picks among available backends."""
    uses_cpu_presets: bool = False
    """Whether ``quantize`` applies :mod:`optibridge.hardware`'s int8 CPU presets (the preset line is printed only then)."""
    graph_formats: tuple[str, ...] = ("onnx",)
    """Graph file formats this backend loads, optimizes and quantizes (see ``optibridge.artifact.GRAPH_FORMATS``)."""
    format_descriptions: Mapping[str, str] = MappingProxyType({})
    """Formats this backend introduces (writes), with the words error messages use for them."""
    modes: tuple[ModeSpec, ...] = ()
    """The quantization modes :meth:`quantize` implements; ``quantize`` refuses any other before calling it."""
    threads_option: str | None = None
    """The :meth:`load` option that sets the number of compute threads (``bench --threads`` uses it)."""
    extra_options: Mapping[str, Any] = MappingProxyType({})
    """Load options for a latency measurement besides the threads (e.g. a latency performance hint)."""
    device_syntax: str = "cpu"
    """The ``device=`` values :meth:`load` takes, in words for help and errors (e.g. "cuda or cuda:N")."""

    def mode(self, name: str) -> ModeSpec | None:
        """The declared mode called ``name``, or None."""
        return next((m for m in self.modes if m.name == name), None)

    @abstractmethod
    def status(self) -> BackendStatus:
        """Probe this machine without side effects (no device initialisation, no monkeypatching)."""

    @abstractmethod
    def load(self, artifact: "Artifact", *, graph: str = "model", device: str = "cpu", **options: Any) -> Session:
        """Load one graph of an artifact (``artifact.graph_path(graph)``) for ``device``.

        Raise :class:`~optibridge.errors.BackendError` when the device is not served by this backend
        or an option is unknown (list the valid ones), and
        :class:`~optibridge.errors.ArtifactError` when the model file cannot be read.
        """

    def option_names(self) -> frozenset[str] | None:
        """The keyword options :meth:`load` takes, so a misspelled one is refused before minutes of
        export; None (the default) leaves the check to ``load``."""
        return None

    def optimize(self, artifact: "Artifact", config: "OptimizationConfig", output_dir: Path) -> StepReport:
        """Write an optimized copy of every graph of ``artifact`` into ``output_dir``.

        ``output_dir`` is a staging folder: write each graph under the file name it has in
        ``artifact.metadata.graphs`` (and its ``.data`` side file when weights are external);
        the caller copies the other files, checks accuracy, records the step and moves the folder
        into place. A backend that writes another format (an OpenVINO IR) returns the new
        :class:`~optibridge.artifact.GraphSpec` per graph in ``report["specs"]``, and facts a loader
        needs in ``report["metadata_extra"]`` (merged into the metadata's ``extra``). Return a :class:`StepReport`::

            {"graphs": {name: {"fused": {op_type: count}, "attention_fused": bool, "notes": [...]}},
             "settings": {...what was actually applied...}, "notes": [...]}

        Raise :class:`~optibridge.errors.BackendError` for what this backend cannot do, naming
        what would work instead; never write a graph that is silently less optimized than asked
        without saying so in ``notes``.
        """
        from .errors import BackendError

        raise BackendError(f"backend {self.name!r} cannot optimize graphs; `optibridge backends` lists the backends that can")

    def quantize(
        self, artifact: "Artifact", config: "QuantizationConfig", output_dir: Path,
        calibration: "CalibrationData | None" = None,
    ) -> StepReport:
        """Write a quantized copy of every graph of ``artifact`` into ``output_dir`` (same contract as :meth:`optimize`).

        ``config.preset`` is already resolved (never "auto"). ``calibration`` holds ready feeds per
        graph when the mode needs samples (static; smoothing). The report's graphs entries carry
        ``"quantized": {op_type: count}`` instead of ``"fused"``.
        """
        from .errors import BackendError

        raise BackendError(f"backend {self.name!r} cannot quantize graphs; `optibridge backends` lists the backends that can")

    def describe(self) -> str:
        return self.description or self.name


class DetectOnlyBackend(Backend):
    """A registered backend that cannot run models yet: it reports what this machine lacks for it.

    Subclasses list the missing pieces in :meth:`missing`; ``load`` is always a clear error,
    never a silent fallback to another device.
    """

    def missing(self) -> list[str]:
        return []

    def version(self) -> str | None:
        return None

    def status(self) -> BackendStatus:
        reason = "; ".join(self.missing() + ["not implemented yet in this optibridge version"])
        return BackendStatus(self.name, False, version=self.version(), reason=reason)

    def load(self, artifact: "Artifact", *, graph: str = "model", device: str = "cpu", **options: Any) -> Session:
        from .errors import BackendError

        raise BackendError(f"backend {self.name!r} is not usable: {self.status().reason}; `optibridge backends` lists the usable ones")
