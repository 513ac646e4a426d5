"""``OBModel``: the drop-in replacement for a transformers model, backed by an optibridge Session."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..artifact import Artifact, copy_artifact, is_artifact
from ..backend import Session, torch_runner
from ..backends import get_registry
from ..errors import ArtifactError, BackendError, InputError
from ..exporter import DEFAULT_ATOL
from ..exporter import export as export_model
from ..tasks import TASKS, Task
from .inputs import prepare_inputs, prepare_torch_inputs
from .outputs import resolve_output_class, wrap_outputs

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound="OBModel")

# PyTorch forward() arguments that these inference graphs cannot honour; accepted only at their
# "off" value so code that passes them explicitly (output_attentions=False) keeps working.
UNSUPPORTED_WHEN_SET = (
    "labels", "position_ids", "head_mask", "inputs_embeds", "output_attentions", "output_hidden_states",
    "interpolate_pos_encoding", "start_positions", "end_positions",
)
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "trust_remote_code", "subfolder")

_CLASS_FOR_TASK: dict[str, str] = {}
OUR_CLASS_PREFIXES = ("OBModel", "ORTModel", "OVModel")


class PreTrainedModel:
    """Not transformers' class: a marker whose *name* transformers 4.x looks for. Its ``pipeline()``
    infers the framework by walking the model class's bases for one called ``PreTrainedModel`` (or one
    from a torch module) and raises "Could not infer framework" otherwise; exported models take and
    return torch tensors, so they declare themselves PyTorch this way. transformers 5.x does not ask."""


class OBModel(PreTrainedModel):
    """Base class of the ``OBModelFor<Task>`` classes. Subclasses only name their task."""

    task_name: ClassVar[str] = ""
    default_backend: ClassVar[str] = "ort"

    def __init__(self, sessions: dict[str, Session], artifact: Artifact, config: Any, *, keep_alive: Any = None) -> None:
        self.sessions = sessions
        """One loaded session per graph of the artifact."""
        self.session = sessions[artifact.metadata.main_graph_name]
        self.artifact = artifact
        self.config = config
        self.task: Task = TASKS[artifact.metadata.task]
        self._output_class = resolve_output_class(artifact.metadata.output_class, self.task.output_class)
        self._keep_alive = keep_alive  # the temporary folder of an on-the-fly export lives as long as the model
        self.name_or_path = str(artifact.metadata.source.get("model") or artifact.path)
        self.main_input_name = {"vision": "pixel_values", "multimodal": "pixel_values", "speech": "input_features",
                                "audio": "input_values"}.get(self.task.modality, "input_ids")

    # -- loading and saving ------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        model_id: str | os.PathLike[str],
        *,
        export: bool | None = None,
        backend: str | None = None,
        device: str = "cpu",
        task: str | None = None,
        opset: int | None = None,
        exporter: str = "auto",
        atol: float = DEFAULT_ATOL,
        **options: Any,
    ) -> ModelT:
        """Load an optibridge artifact folder, or export a transformers model first.

        ``model_id`` is an artifact folder (written by ``optibridge export`` or ``save_pretrained``),
        or a transformers model folder / hub id with ``export=True``. With ``export=None`` a
        folder that is not an artifact is exported on the fly (logged). Remaining keyword
        arguments are the backend's session options (e.g. ``intra_op_num_threads=2``) and the
        hub arguments ``revision``, ``cache_dir``, ``token``, ``local_files_only``.
        """
        hub_kwargs = {k: options.pop(k) for k in HUB_KWARGS if k in options}
        backend_name = backend or cls.default_backend
        # Fail on a backend/device that is not there before spending time on an export.
        backend_impl = get_registry().require_available(backend_name, device)
        keep_alive = None
        if is_artifact(model_id) and not export:
            artifact = Artifact.load(model_id)
        elif export is False:
            raise ArtifactError(
                f"{model_id} is not an optibridge artifact (no optibridge.json); pass export=True to export "
                "it now, or export it once with `optibridge export --model MODEL OUT` and load OUT"
            )
        else:
            if export is None:
                logger.info("%s is not an optibridge artifact: exporting it now (pass export=True to silence)", model_id)
            keep_alive = tempfile.TemporaryDirectory(prefix="optibridge-")
            result = export_model(
                model_id, Path(keep_alive.name) / "artifact", task=task or cls.task_name or None,
                opset=opset, exporter=exporter, atol=atol, **hub_kwargs,
            )
            artifact = result.artifact
        cls._check_task(artifact)
        sessions = {name: backend_impl.load(artifact, graph=name, device=device, **options) for name in artifact.metadata.graphs}
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(artifact.path)
        return cls(sessions, artifact, config, keep_alive=keep_alive)

    @classmethod
    def _check_task(cls, artifact: Artifact) -> None:
        found = artifact.metadata.task
        if cls.task_name and found != cls.task_name:
            right = _CLASS_FOR_TASK.get(found, "the class for that task")
            raise ArtifactError(
                f"{artifact.path} was exported for {found!r}, but {cls.__name__} runs {cls.task_name!r}; "
                f"load it with {right}, or re-export with --task {cls.task_name}"
            )

    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """Write the artifact (graph, metadata, config, preprocessor files) to ``save_directory``."""
        copy_artifact(self.artifact, save_directory)

    # -- the torch-like surface pipelines and user code rely on --------------------------------
    @property
    def device(self) -> Any:
        import torch

        return torch.device(self.session.device)

    @property
    def dtype(self) -> Any:
        import torch

        return torch.float32

    @property
    def backend(self) -> str:
        return self.session.backend

    def to(self: ModelT, *args: Any, **kwargs: Any) -> ModelT:
        """Accepts the model's own device (and float32); moving to another device is an error,
        because it needs another backend — never a silent run elsewhere."""
        import torch

        for target in list(args) + list(kwargs.values()):
            if isinstance(target, torch.dtype):
                if target != torch.float32:
                    raise BackendError(f"{type(self).__name__} runs in float32; {target} is chosen at export/optimize time")
                continue
            if target is None:
                continue
            wanted = torch.device(target) if not isinstance(target, int) else torch.device("cuda", target)
            if wanted.type != self.device.type:
                raise BackendError(
                    f"this model runs on backend {self.backend!r} ({self.device}); to run on {wanted} load it with "
                    f"from_pretrained(..., backend=...) for that device (see `optibridge backends`)"
                )
        return self

    def eval(self: ModelT) -> ModelT:
        return self

    def can_generate(self) -> bool:
        return False

    @property
    def generation_config(self) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, return_dict: bool | None = None, **kwargs: Any) -> Any:
        """Same call as the PyTorch model: positional or keyword tensors (torch or numpy)."""
        names = [spec.name for spec in self.artifact.metadata.inputs]
        if len(args) > len(names):
            raise InputError(f"{type(self).__name__} takes at most {len(names)} positional inputs ({', '.join(names)})")
        for name, value in zip(names, args):
            if name in kwargs:
                raise InputError(f"{name} given both positionally and by keyword")
            kwargs[name] = value
        for name in UNSUPPORTED_WHEN_SET:
            value = kwargs.pop(name, None)
            if value not in (None, False):
                raise InputError(f"{name} is not supported by exported models (inference outputs only); leave it unset")
        kwargs.pop("use_cache", None)
        result = self._forward_on_device(kwargs)
        if result is None:
            feed, as_torch = prepare_inputs(self.artifact.metadata.inputs, kwargs)
            result = wrap_outputs(self._output_class, self.session.run(feed), as_torch)
        return result if return_dict is not False else result.to_tuple()

    def _forward_on_device(self, kwargs: dict[str, Any]) -> Any:
        """Torch tensors in and out through ``session.run_torch`` (no host copies), when the session
        takes torch tensors and the caller passed some; None means: use the numpy path."""
        import torch

        run_torch = torch_runner(self.session)
        if run_torch is None or not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
            return None
        return self._output_class(**run_torch(prepare_torch_inputs(self.artifact.metadata.inputs, kwargs)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task.name!r}, backend={self.backend!r}, artifact={str(self.artifact.path)!r})"


class _PipelineLogFilter(logging.Filter):
    """transformers' pipelines log an error for any model class not in their mappings; drop that
    one message for optibridge classes (the pipelines work with them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = "The model '"
        return not (message.startswith(prefix) and message[len(prefix):].startswith(OUR_CLASS_PREFIXES)
                    and "is not supported for" in message)


def register_task_class(cls: type[OBModel]) -> type[OBModel]:
    _CLASS_FOR_TASK.setdefault(cls.task_name, cls.__name__)
    return cls


logging.getLogger("transformers.pipelines.base").addFilter(_PipelineLogFilter())
