"""``OBModel``: the drop-in replacement for a transformers model, backed by an optibridge Session."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..artifact import METADATA_FILE, Artifact, ArtifactMetadata, copy_artifact, file_digest, files_to_carry, is_artifact
from ..backend import Session, torch_runner
from ..backends import get_registry
from ..device import Device
from ..errors import ArtifactError, BackendError, InputError, UnsupportedModelError
from ..exporter import DEFAULT_ATOL
from ..exporter import export as export_model
from ..optimum_folders import is_optimum_folder, read_optimum_folder
from ..saturation import warn_if_int8_may_saturate
from ..staging import pid_prefix
from ..tasks import TASKS, Task
from .guards import InputLimits, check_interface, guard, positive_int
from .inputs import check_dropped_token_types, prepare_inputs, prepare_torch_inputs
from .outputs import resolve_output_class, wrap_outputs

if TYPE_CHECKING:
    from transformers import GenerationConfig

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound="OBModel")

# PyTorch forward() arguments that these inference graphs cannot honour; accepted only at their
# "off" value so code that passes them explicitly (output_attentions=False) keeps working.
UNSUPPORTED_WHEN_SET = (
    "position_ids", "head_mask", "inputs_embeds", "output_attentions", "output_hidden_states", "interpolate_pos_encoding",
)
# What the generative classes refuse the same way (their graphs take position_ids themselves).
DECODER_UNSUPPORTED_WHEN_SET = ("head_mask", "decoder_head_mask", "cross_attn_head_mask", "output_attentions", "output_hidden_states")


def refuse_when_set(kwargs: dict[str, Any], names: tuple[str, ...]) -> None:
    """Pop ``names`` from ``kwargs``; one that is set (not None or False) is an :class:`InputError`: the
    graph computes none of it, and leaving it out silently would hand back less than was asked for."""
    for name in names:
        value = kwargs.pop(name, None)
        if value is not None and value is not False:  # never `in (None, False)`: a tensor has no truth value
            raise InputError(f"{name} is not supported by exported models (inference outputs only); leave it unset")


# Training targets change no output: an evaluation loop's model(**batch) runs, without a loss (as Optimum's classes).
TARGETS = ("labels", "start_positions", "end_positions")
GENERATION_CONFIG = "generation_config.json"
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "trust_remote_code", "force_download")
# Loading arguments of transformers / Optimum / optimum-intel that optibridge does not take, and what to do instead.
PEER_ARGUMENTS = {
    "from_transformers": "Optimum's old name for export: pass export=True",
    "use_auth_token": "transformers' old name for token: pass token=...",
    "use_merged": "optibridge exports one decoder graph that runs with and without a cache: drop use_merged",
    "library_name": "optibridge reads the library from the folder: drop library_name",
    "compile_only": "OpenVINO's compile-only load is not offered: drop it (compile=False defers compiling instead)",
    "quantization_config": ("quantize the artifact first (`optibridge quantize DIR OUT --mode int4`; its --help lists each "
                            "backend's modes) and load OUT; the OVModelFor… classes take quantization_config=OVWeightQuantizationConfig(...)"),
    "load_in_4bit": "quantize the artifact first (`optibridge quantize DIR OUT --mode int4`; its --help lists each backend's modes) and load OUT",
}

CLASS_FOR_TASK: dict[str, type["OBModel"]] = {}
"""The one task → OBModelFor<Task> table: filled by :func:`register_task_class`, keyed by :data:`~optibridge.tasks.TASKS`."""
OUR_CLASS_PREFIXES = ("OBModel", "ORTModel", "OVModel")


class PreTrainedModel:
    """Not transformers' class: a marker whose *name* transformers 4.x looks for. Its ``pipeline()``
    infers the framework by walking the model class's bases for one called ``PreTrainedModel`` (or one
    from a torch module) and raises "Could not infer framework" otherwise; exported models take and
    return torch tensors, so they declare themselves PyTorch this way. transformers 5.x does not ask."""


def _check_peer_arguments(options: dict[str, Any]) -> None:
    """The peers' loading arguments optibridge does not take, with what to do instead."""
    peer = [f"{name} ({PEER_ARGUMENTS[name]})" for name in options if name in PEER_ARGUMENTS]
    if peer:
        raise InputError(f"from_pretrained does not take {'; '.join(peer)}")


def _check_option_names(options: dict[str, Any], backend: Any) -> None:
    """Refuse what ``load`` would refuse before an export spends minutes on it: names the backend does not know."""
    accepted = backend.option_names()
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        raise InputError(
            f"from_pretrained got unknown argument(s) {', '.join(unknown)}; besides export, task, device, config, use_cache, "
            f"subfolder, file_name and the hub's {', '.join(HUB_KWARGS)}, backend {backend.name!r} takes {', '.join(sorted(accepted))}"
        )


def _reader_for(artifact: Artifact, chosen: Any, asked: str, device: str) -> Any:
    """The backend that loads ``artifact``: ``chosen`` when it reads every graph format in it; for
    ``"auto"`` the first usable backend that does; else an error naming the backends that do."""
    unread = sorted(artifact.graph_formats - set(chosen.graph_formats))
    if not unread:
        return chosen
    registry = get_registry()
    readers = [name for name in registry.readers(unread[0]) if all(f in registry.get(name).graph_formats for f in unread)]
    if asked == "auto":
        for name in sorted(readers, key=lambda n: (registry.get(n).priority, n)):
            try:
                return registry.require_available(name, device)
            except BackendError:
                continue
    name, spec = next((n, g) for n, g in artifact.metadata.graphs.items() if g.format == unread[0])
    raise ArtifactError(
        f"graph {name!r} of {artifact.path} is {registry.format_description(spec.format)} ({spec.file}), which backend "
        f"{chosen.name!r} cannot read; load it with backend={' or '.join(repr(r) for r in readers) or '(none installed reads it)'}, "
        "or use the ONNX artifact it was made from"
    )


class OBModel(PreTrainedModel):
    """Base class of the ``OBModelFor<Task>`` classes. Subclasses only name their task."""

    task_name: ClassVar[str] = ""
    default_backend: ClassVar[str] = "auto"
    """"auto": the first usable backend by priority that serves ``device`` and reads the artifact's graphs."""

    def __init__(self, sessions: dict[str, Session], artifact: Artifact, config: Any, *, keep_alive: Any = None) -> None:
        record = artifact.metadata.extra.get("image_size")
        multiple = positive_int(record.get("multiple_of")) if isinstance(record, dict) else None
        limits = dataclasses.replace(InputLimits.from_config(config), image_multiple=multiple)
        for name, session in sessions.items():
            check_interface(name, artifact.metadata.graphs[name], session)
        self.sessions = {name: guard(session, limits) for name, session in sessions.items()}
        """One loaded session per graph of the artifact, each call's inputs checked (see :mod:`.guards`)."""
        self.session = self.sessions[artifact.metadata.main_graph_name]
        self.artifact = artifact
        self.config = config
        self.task: Task = TASKS[artifact.metadata.task]
        self._output_class = resolve_output_class(artifact.metadata.output_class, self.task.output_class)
        self._keep_alive = keep_alive  # the temporary folder of an on-the-fly export lives as long as the model
        self.name_or_path = str(artifact.metadata.source.get("model") or artifact.path)
        self.main_input_name = main_input_name(self.task.modality, [spec.name for spec in artifact.metadata.inputs])

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
        config: Any = None,
        use_cache: bool | None = None,
        subfolder: str = "",
        file_name: str | None = None,
        verify_hashes: bool = True,
        allow_new_weights: bool = False,
        **options: Any,
    ) -> ModelT:
        """Load an optibridge artifact folder, or export a transformers model first.

        ``model_id`` is an artifact folder (written by ``optibridge export`` or ``save_pretrained``),
        or a transformers model folder / hub id with ``export=True``. With ``export=None`` a
        folder that is not an artifact is exported on the fly (logged). Remaining keyword
        arguments are the backend's session options (e.g. ``intra_op_num_threads=2``) and the
        hub arguments ``revision``, ``cache_dir``, ``token``, ``local_files_only``, ``force_download``.

        As transformers/Optimum take them: ``config`` (a ``PretrainedConfig`` used instead of the
        folder's config.json), ``use_cache`` (False: generative models recompute the whole sequence
        each step), ``subfolder`` (the model lives in ``model_id/subfolder``), ``file_name`` (which
        graph file of a folder holding several, e.g. ``model_quantized.onnx``).

        An artifact's graph files are checked against their recorded SHA-256 (cached per process;
        ``verify_hashes=False`` checks sizes only). Model code shipped with a checkpoint runs only
        with ``trust_remote_code=True``; a checkpoint whose weights do not fill the task's model
        (a new, random head) exports only with ``allow_new_weights=True``.
        """
        hub_kwargs = {k: options.pop(k) for k in HUB_KWARGS if k in options}
        if subfolder:
            if Path(model_id, subfolder).is_dir():
                model_id = Path(model_id, subfolder)
            else:
                hub_kwargs["subfolder"] = subfolder
        backend_name = backend or cls.default_backend
        # Fail on a backend/device that is not there before spending time on an export.
        backend_impl = get_registry().require_available(backend_name, device)
        _check_peer_arguments(options)
        keep_alive = None
        if is_artifact(model_id) and not export:
            artifact = Artifact.load(model_id, verify_hashes=verify_hashes)
            check_file_name(artifact, file_name)
        elif not export and is_optimum_folder(model_id):  # what optimum-cli / ORTModel.save_pretrained wrote
            artifact = read_optimum_folder(model_id, task=cls.task_name or task, file_name=file_name)
        elif export is False:
            raise ArtifactError(
                f"{model_id} is not an optibridge artifact (no optibridge.json); pass export=True to export "
                "it now, or export it once with `optibridge export --model MODEL OUT` and load OUT"
            )
        else:
            if export is None:
                logger.info("%s is not an optibridge artifact: exporting it now (pass export=True to silence)", model_id)
            _check_option_names(options, backend_impl)  # an export writes ONNX, which the chosen backend reads
            keep_alive = tempfile.TemporaryDirectory(prefix=pid_prefix("optibridge-"))
            result = export_model(
                model_id, Path(keep_alive.name) / "artifact", task=task or cls.task_name or None,
                opset=opset, exporter=exporter, atol=atol, use_cache=use_cache is not False, allow_new_weights=allow_new_weights,
                **hub_kwargs,
            )
            artifact = result.artifact
        cls._check_task(artifact)
        if str(device).lower() == "cpu":
            warn_if_int8_may_saturate(artifact.metadata.steps)
        backend_impl = _reader_for(artifact, backend_impl, backend_name, device)
        sessions = {name: backend_impl.load(artifact, graph=name, device=device, **options) for name in artifact.metadata.graphs}
        if config is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(artifact.path, trust_remote_code=False)  # never run a folder's code
        model = cls(sessions, artifact, config, keep_alive=keep_alive)
        if use_cache is not None:
            model._set_use_cache(use_cache)
        return model

    def _set_use_cache(self, use_cache: bool) -> None:
        """Encoders have no cache: recorded on the config, as transformers does."""
        self.config.use_cache = use_cache

    @classmethod
    def _check_task(cls, artifact: Artifact) -> None:
        found = artifact.metadata.task
        if cls.task_name and found != cls.task_name:
            right = CLASS_FOR_TASK[found].__name__ if found in CLASS_FOR_TASK else "the class for that task"
            raise ArtifactError(
                f"{artifact.path} was exported for {found!r}, but {cls.__name__} runs {cls.task_name!r}; "
                f"load it with {right}, or re-export with --task {cls.task_name}"
            )

    def save_pretrained(self, save_directory: str | os.PathLike[str], **_: Any) -> None:
        """Write the artifact (graph, metadata, config, preprocessor files) to ``save_directory``; a
        model loaded from a folder Optimum wrote is saved as the artifact ``import-optimum`` makes of it."""
        if not is_artifact(self.artifact.path):  # its metadata was built in memory (optimum_folders)
            from ..optimum_folders import import_optimum_folder

            graphs = list(self.artifact.metadata.graphs.values())
            saved = import_optimum_folder(self.artifact.path, save_directory, task=self.artifact.metadata.task,
                                          file_name=graphs[0].file if len(graphs) == 1 else None)
        else:
            saved = copy_artifact(self.artifact, save_directory, carry=files_to_carry(save_directory))  # a tokenizer saved there stays
        self._save_generation_config(Path(save_directory), saved.metadata)

    def _save_generation_config(self, folder: Path, metadata: ArtifactMetadata) -> None:
        """A generative model's generation settings as they are in memory, as transformers' save_pretrained
        writes them (``model.generation_config.max_new_tokens = 64`` is kept); the manifest (``metadata``,
        what was just written to ``folder``) records the file."""
        config = getattr(self, "_generation_config", None)
        if config is None:
            return
        config.save_pretrained(folder)
        metadata.files[GENERATION_CONFIG] = file_digest(folder / GENERATION_CONFIG)
        (folder / METADATA_FILE).write_text(metadata.to_json())

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
        name: str = self.session.backend
        return name

    @property
    def inference_precision(self) -> str:
        """The float precision the main graph computes in: "f32", or what the backend reports
        (OpenVINO: "bf16"/"f16" when the artifact or ``inference_precision=`` asked for it)."""
        return str(getattr(self.session, "inference_precision", "f32"))

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
            wanted = Device.parse(target, int_kind="cuda")  # model.to(0) means the first CUDA device, as in torch
            if wanted.kind != Device.parse(self.device).kind:
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
    def generation_config(self) -> GenerationConfig | None:  # None: not generative (GenerativeModel overrides it)
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
        if (self.artifact.metadata.extra.get("image_size") or {}).get("interpolate_pos_encoding"):
            kwargs.pop("interpolate_pos_encoding", None)  # what the graph does at every size
        refuse_when_set(kwargs, UNSUPPORTED_WHEN_SET)
        targets = [name for name in TARGETS if kwargs.pop(name, None) is not None]
        if targets and not getattr(self, "_warned_targets", False):
            self._warned_targets = True
            warnings.warn(f"{', '.join(targets)} ignored: exported models compute outputs only, no loss "
                          "(compute it from the logits)", UserWarning, stacklevel=2)
        kwargs.pop("use_cache", None)
        if "token_type_ids" not in names:
            check_dropped_token_types(kwargs.pop("token_type_ids", None), self.config)
        result = self._forward_on_device(kwargs)
        if result is None:
            feed, as_torch = prepare_inputs(self.artifact.metadata.inputs, kwargs)
            result = wrap_outputs(self._output_class, self.session.run(feed), as_torch)
        return result if return_dict is not False else result.to_tuple()

    def _forward_on_device(self, kwargs: dict[str, Any]) -> Any:
        """Torch tensors in and out through ``session.run_torch`` (no host copies), when the session
        takes torch tensors and the caller passed some; None means: use the numpy path."""
        run_torch = torch_runner(self.session)
        if run_torch is None:
            return None
        import torch

        if not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
            return None
        return self._output_class(**run_torch(prepare_torch_inputs(self.artifact.metadata.inputs, kwargs)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task.name!r}, backend={self.backend!r}, artifact={str(self.artifact.path)!r})"


def check_file_name(artifact: Artifact, file_name: str | None) -> None:
    """``file_name`` must name one of the artifact's graph files (an artifact records which file is which graph)."""
    files = [spec.file for spec in artifact.metadata.graphs.values()]
    if file_name is not None and file_name not in files:
        raise ArtifactError(
            f"{artifact.path} has no graph file {file_name!r}; its graph files: {', '.join(files)}. "
            "An artifact written by optimize/quantize is its own folder: load that folder instead"
        )


class _PipelineLogFilter(logging.Filter):
    """transformers' pipelines log an error for any model class not in their mappings; drop that
    one message for optibridge classes (the pipelines work with them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = "The model '"
        return not (message.startswith(prefix) and message[len(prefix):].startswith(OUR_CLASS_PREFIXES)
                    and "is not supported for" in message)


MAIN_INPUTS = ("input_ids", "pixel_values", "input_values", "input_features", "flattened_patches")
MAIN_INPUT_BY_MODALITY = {"vision": "pixel_values", "multimodal": "pixel_values", "speech": "input_features", "audio": "input_values"}


def main_input_name(modality: str, graph_inputs: list[str]) -> str:
    """What pipelines and ``generate(inputs=...)`` call the model's main input: the task modality's, where the graph
    takes it, else the graph's first main input (a CTC model on log-mel features, parakeet, takes ``input_features``)."""
    wanted = MAIN_INPUT_BY_MODALITY.get(modality, "input_ids")
    if wanted in graph_inputs or not graph_inputs:
        return wanted
    return next((name for name in graph_inputs if name in MAIN_INPUTS), wanted)


def register_task_class(cls: type[ModelT]) -> type[ModelT]:
    """Record ``cls`` as the class of its ``task_name``, which must be a task of :data:`~optibridge.tasks.TASKS`."""
    if cls.task_name not in TASKS:
        raise UnsupportedModelError(f"{cls.__name__}.task_name {cls.task_name!r} is not a task; known: {', '.join(TASKS)}")
    CLASS_FOR_TASK.setdefault(cls.task_name, cls)  # the first one wins: subclasses (Optimum aliases) do not replace it
    return cls


logging.getLogger("transformers.pipelines.base").addFilter(_PipelineLogFilter())
