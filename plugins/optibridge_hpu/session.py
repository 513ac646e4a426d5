"""An HPU Session: the artifact's IO contract (same input and output names as its ONNX graphs)
served by the PyTorch model on Gaudi, so every ``OBModelFor*`` class runs unchanged.

Each graph is the very module the exporter traced (:func:`optibridge.exporter.graph_module`):
the HPU session and the ONNX graph compute the same function by construction.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from optibridge.artifact import Artifact, GraphSpec
from optibridge.errors import BackendError, InputError

from .runtime import HpuRuntime


def source_reference(artifact: Artifact, given: str | None = None) -> str:
    """The transformers model to run: ``given``, else the local folder or hub id recorded at export."""
    source = artifact.metadata.source
    ref = given or source.get("local_path") or source.get("model")
    if not ref:
        raise BackendError(
            f"backend 'hpu' runs the PyTorch model, and {artifact.path} records no source model; pass source_model=MODEL_DIR"
        )
    return str(ref)


def load_torch_model(artifact: Artifact, given: str | None = None) -> Any:
    from optibridge.exporter import load_pytorch_model

    return load_pytorch_model(source_reference(artifact, given), artifact.metadata.task)


def step_module(model: Any, artifact: Artifact, graph: str) -> Any:
    """The module with the graph's positional inputs and tuple outputs: the one the exporter traced."""
    from optibridge.exporter import graph_module

    return graph_module(model, artifact, graph)


class HpuSession:
    """Runs one graph's step module on the HPU; torch tensors stay on the device (``run_torch``)."""

    backend = "hpu"
    accepts_torch = True

    def __init__(self, module: Any, spec: GraphSpec, runtime: HpuRuntime, device: str = "hpu", dtype: Any = None) -> None:
        import torch

        self.module = module
        self.spec = spec
        self.runtime = runtime
        self.device = device
        self.torch_device = torch.device(device)
        self.dtype = dtype
        """The autocast dtype (torch.bfloat16 by default), None for the model's own."""

    @property
    def input_names(self) -> list[str]:
        return self.spec.input_names

    @property
    def output_names(self) -> list[str]:
        return self.spec.output_names

    def run_torch(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise InputError(f"missing graph input(s) {', '.join(missing)}; the graph takes {', '.join(self.input_names)}")
        args = [torch.as_tensor(inputs[name]).to(self.torch_device) for name in self.input_names]
        with torch.inference_mode(), self.runtime.autocast(self.dtype):
            outputs = self.module(*args)
        self.runtime.mark_step()  # lazy mode: run what was queued now, not at the next host read
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        # The artifact's contract is float32 outputs; bf16 autocast results are widened on the device.
        return {spec.name: out.to(torch.float32) if out.is_floating_point() and spec.dtype == "float32" else out
                for spec, out in zip(self.spec.outputs, outputs)}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        result = self.run_torch({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()})
        return {name: value.cpu().numpy() for name, value in result.items()}
