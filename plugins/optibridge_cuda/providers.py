"""Keyword options of the CUDA backend → ONNX Runtime provider options and session options.

Provider options are validated here (ONNX Runtime ignores a misspelled one) and passed as the
strings ORT parses: booleans as "1"/"0", sizes in bytes.
"""

from __future__ import annotations

from typing import Any, Callable

from optibridge.errors import BackendError
from optibridge_ort import SESSION_OPTIONS

CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
PROVIDERS = {"cuda": CUDA_PROVIDER, "tensorrt": TENSORRT_PROVIDER}


def _bool(name: str, value: Any) -> str:
    if value in (True, False, 0, 1):
        return "1" if value else "0"
    raise BackendError(f"{name} must be True or False, not {value!r}")


def _positive_int(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BackendError(f"{name} must be a positive integer (bytes for sizes), not {value!r}")
    return str(value)


def _choice(*valid: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in valid:
            raise BackendError(f"{name} must be one of {', '.join(valid)}, not {value!r}")
        return str(value)

    return check


def _text(name: str, value: Any) -> str:
    if not str(value):
        raise BackendError(f"{name} must not be empty")
    return str(value)


CUDA_OPTIONS: dict[str, Callable[[str, Any], str]] = {
    "cudnn_conv_algo_search": _choice("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
    "arena_extend_strategy": _choice("kNextPowerOfTwo", "kSameAsRequested"),
    "gpu_mem_limit": _positive_int,
    "do_copy_in_default_stream": _bool,
    "cudnn_conv_use_max_workspace": _bool,
    "enable_cuda_graph": _bool,
    "tunable_op_enable": _bool,
    "use_tf32": _bool,
}
TENSORRT_OPTIONS: dict[str, Callable[[str, Any], str]] = {
    "trt_fp16_enable": _bool,
    "trt_int8_enable": _bool,
    "trt_engine_cache_enable": _bool,
    "trt_engine_cache_path": _text,
    "trt_timing_cache_enable": _bool,
    "trt_max_workspace_size": _positive_int,
    "trt_builder_optimization_level": _choice(*"012345"),
}
BACKEND_OPTIONS = ("provider", "device_id", "io_binding")
VALID_OPTIONS = BACKEND_OPTIONS + tuple(CUDA_OPTIONS) + tuple(TENSORRT_OPTIONS) + tuple(SESSION_OPTIONS)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(backend options, provider options, session options); any unknown name is an error listing all valid ones."""
    unknown = sorted(set(options) - set(VALID_OPTIONS))
    if unknown:
        raise BackendError(
            f"unknown option(s) {', '.join(unknown)} for backend 'cuda'; valid: {', '.join(VALID_OPTIONS)}"
        )
    backend = {k: v for k, v in options.items() if k in BACKEND_OPTIONS}
    provider = {k: v for k, v in options.items() if k in CUDA_OPTIONS or k in TENSORRT_OPTIONS}
    session = {k: v for k, v in options.items() if k in SESSION_OPTIONS}
    return backend, provider, session


def provider_list(provider: str, device_id: int, options: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """The ``providers=`` list for ``InferenceSession``: the requested provider first.

    TensorRT comes with CUDA behind it, as ONNX Runtime recommends: nodes TensorRT cannot build
    run on CUDA, never on the CPU (the created session is checked for both).
    """
    if provider not in PROVIDERS:
        raise BackendError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    trt_given = sorted(k for k in options if k in TENSORRT_OPTIONS)
    if trt_given and provider != "tensorrt":
        raise BackendError(f"{', '.join(trt_given)} are TensorRT options; pass provider='tensorrt' to use TensorRT")
    cuda = {"device_id": str(device_id)}
    cuda.update({k: CUDA_OPTIONS[k](k, v) for k, v in options.items() if k in CUDA_OPTIONS})
    if provider == "cuda":
        return [(CUDA_PROVIDER, cuda)]
    trt = {"device_id": str(device_id)}
    trt.update({k: TENSORRT_OPTIONS[k](k, v) for k, v in options.items() if k in TENSORRT_OPTIONS})
    if "trt_engine_cache_path" in trt:
        trt.setdefault("trt_engine_cache_enable", "1")  # a cache path without the switch would be ignored
    return [(TENSORRT_PROVIDER, trt), (CUDA_PROVIDER, cuda)]
