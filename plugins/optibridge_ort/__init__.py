"""optibridge backend: ONNX Runtime, CPU execution provider.

The names in ``__all__`` are this plugin's public API: other ONNX Runtime backends (the CUDA
plugin) build their sessions with them instead of reaching into its modules.
"""

from .backend import CORRUPT_FILE_FIX, OrtBackend, OrtSession, create_session
from .binding import IOBindingSession, dlpack_supported
from .options import VALID_OPTIONS as SESSION_OPTIONS
from .options import build_session_options

__all__ = [
    "CORRUPT_FILE_FIX", "IOBindingSession", "OrtBackend", "OrtSession", "SESSION_OPTIONS", "build_session_options",
    "create_session", "dlpack_supported",
]
