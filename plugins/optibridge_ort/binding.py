"""IO binding: torch tensors in, torch tensors out, without copies through numpy or host memory.

Inputs are bound by their device pointer (``IOBinding.bind_input``), outputs are allocated by ONNX
Runtime on the session's device and handed to torch through DLPack (``OrtValue.__dlpack__``,
in every onnxruntime build since 1.21; before that only in training builds). The same code runs
on the CPU provider with CPU tensors — which is how CI exercises it — and on the CUDA provider
with CUDA tensors.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from optibridge.errors import BackendError, InputError

from .backend import OrtSession

# ONNX Runtime's type strings → numpy dtypes (what bind_input wants as element_type).
ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def dlpack_supported(ort: Any) -> bool:
    """Whether this onnxruntime can hand its outputs to torch without a copy."""
    return hasattr(ort.capi._pybind_state.OrtValue, "__dlpack__")


def torch_dtype(numpy_type: Any) -> Any:
    import torch

    return torch.from_numpy(np.zeros((), numpy_type)).dtype


class IOBindingSession(OrtSession):
    """An :class:`OrtSession` that also takes and returns torch tensors on its device (``run_torch``).

    ``device`` is a torch device string ("cpu", "cuda:1"): inputs elsewhere are moved there (the
    token ids of a CPU tokenizer, once per call), outputs come back there.
    """

    accepts_torch = True

    def __init__(self, session: Any, device: str = "cpu") -> None:
        import onnxruntime as ort
        import torch

        super().__init__(session, device=device)
        if not dlpack_supported(ort):
            raise BackendError(
                f"IO binding needs onnxruntime >= 1.21 (DLPack on OrtValue); this is {ort.__version__}. "
                "Upgrade it, or pass io_binding=False to copy outputs through host memory"
            )
        self.torch_device = torch.device(device)
        self._ort_device = self.torch_device.type  # "cpu" or "cuda": ORT's names match torch's
        self._device_id = self.torch_device.index or 0
        self._input_types = {i.name: ORT_TYPES.get(i.type) for i in session.get_inputs()}
        # ORT's IO binding finds no overridable initializer ("Failed to find NodeArg"): logits_to_keep and
        # the like keep their defaults here (the caller selects the logits afterwards).
        self._optional_input_names = []

    def run_torch(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        binding = self.session.io_binding()
        bound = []  # keep every bound tensor alive until the run is over
        for name in self._input_names:
            if name not in inputs:
                raise InputError(f"missing graph input {name!r}; the graph takes {', '.join(self._input_names)}")
            tensor = self._placed(name, inputs[name])
            bound.append(tensor)
            binding.bind_input(name, self._ort_device, self._device_id, self._input_types[name], tuple(tensor.shape), tensor.data_ptr())
        if self._ort_device == "cuda":
            # torch queued the kernels that wrote the inputs on its own stream; ORT reads them on its stream.
            torch.cuda.current_stream(self.torch_device).synchronize()
        for name in self._output_names:
            binding.bind_output(name, self._ort_device, self._device_id)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {name: torch.from_dlpack(value._get_c_value()) for name, value in zip(self._output_names, values)}

    def _placed(self, name: str, tensor: Any) -> Any:
        """The tensor on this session's device, with the graph's dtype, contiguous (bind_input reads raw memory)."""
        import torch

        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(np.asarray(tensor))
        want = self._input_types[name]
        dtype = torch_dtype(want) if want is not None else tensor.dtype
        return tensor.to(device=self.torch_device, dtype=dtype).contiguous()
