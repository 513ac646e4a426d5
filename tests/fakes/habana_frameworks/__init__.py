"""Fake Intel Gaudi PyTorch bridge for tests: records what optibridge calls (see tests/fakes/README.md)."""

from __future__ import annotations

from typing import Any

CALLS: list[tuple[Any, ...]] = []


def _is_hpu(value: Any) -> bool:
    return str(value).split(":")[0] == "hpu"


def install_device(monkeypatch: Any) -> None:
    """``tensor.to("hpu")`` / ``module.to("hpu")`` become recorded no-ops (the tensors stay on the CPU)."""
    import torch

    tensor_to, module_to = torch.Tensor.to, torch.nn.Module.to

    def strip(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if any(_is_hpu(a) for a in args if isinstance(a, (str, torch.device))) or _is_hpu(kwargs.get("device", "")):
            CALLS.append(("to", kind, "hpu"))
            args = tuple(a for a in args if not (isinstance(a, (str, torch.device)) and _is_hpu(a)))
            kwargs = {k: v for k, v in kwargs.items() if not (k == "device" and _is_hpu(v))}
        return args, kwargs

    def fake_tensor_to(self: Any, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = strip("tensor", args, kwargs)
        return tensor_to(self, *args, **kwargs) if args or kwargs else self

    def fake_module_to(self: Any, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = strip(type(self).__name__, args, kwargs)
        return module_to(self, *args, **kwargs) if args or kwargs else self

    monkeypatch.setattr(torch.Tensor, "to", fake_tensor_to)
    monkeypatch.setattr(torch.nn.Module, "to", fake_module_to)
