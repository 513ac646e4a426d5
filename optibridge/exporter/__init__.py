"""torch → ONNX export: task → IO spec → ``torch.onnx.export`` → validation against PyTorch."""

from .architectures import ARCHITECTURES, Architecture, get_architecture
from .core import DEFAULT_ATOL, ExportResult, export, export_source
from .validate import OutputCheck, ValidationReport

__all__ = [
    "ARCHITECTURES", "Architecture", "DEFAULT_ATOL", "ExportResult", "OutputCheck", "ValidationReport",
    "export", "export_source", "get_architecture",
]
