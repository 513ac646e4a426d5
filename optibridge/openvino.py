"""Optimum-Intel-compatible names: code written for ``optimum.intel`` runs with only its import changed.

    # from optimum.intel import OVModelForSequenceClassification
    from optibridge.openvino import OVModelForSequenceClassification

    model = OVModelForSequenceClassification.from_pretrained("./my-model", export=True, device="CPU",
                                                             ov_config={"PERFORMANCE_HINT": "LATENCY"})

``ov_config`` holds raw OpenVINO properties, applied after optibridge's defaults (fp32 precision).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from .modeling.peers import PeerNames, module_getattr
from .modeling.base import OBModel

ModelT = TypeVar("ModelT", bound="OVModel")


class OVModel(OBModel):
    """optimum-intel's ``OVModel`` surface: the ``openvino`` backend, ``device=`` and ``ov_config=``."""

    default_backend = "openvino"

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[ModelT], model_id: str | os.PathLike[str], *, device: str = "CPU", ov_config: dict[str, Any] | None = None,
        compile: bool = True, **kwargs: Any,
    ) -> ModelT:
        # compile=False (compile later) is accepted for compatibility; models are compiled on load.
        if ov_config:
            kwargs["ov_config"] = ov_config
        return super().from_pretrained(model_id, device=device, **kwargs)


_NAMES = PeerNames("OVModel", OVModel, __name__, "optimum-intel")
__getattr__ = module_getattr(_NAMES)


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES.names()])


__all__ = ["OVModel", *_NAMES.names()]
