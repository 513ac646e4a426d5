"""Pipelines named by task, as diffusers' ``AutoPipelineFor*`` and Optimum's ``ORTPipelineFor*``:
the concrete class (Stable Diffusion, SDXL or LCM) comes from what the folder holds.

    from optibridge import OBPipelineForText2Image      # was: from diffusers import AutoPipelineForText2Image
    pipe = OBPipelineForText2Image.from_pretrained("sd-artifact", backend="openvino")

``OBDiffusionPipeline`` loads the task the artifact was exported for (or the diffusers folder was
saved as). Imports no diffusers until ``from_pretrained`` picks a class.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, ClassVar

from ..artifact import Artifact, is_artifact
from ..errors import ArtifactError, UnsupportedModelError
from .families import inspect_pipeline, is_pipeline_folder, normalize_task
from .record import diffusion_record


def pipeline_class_name(model_id: str | os.PathLike[str], task: str | None) -> str:
    """The diffusers pipeline class (``StableDiffusionXLImg2ImgPipeline`` ...) that runs ``task`` for what
    ``model_id`` holds; ``task`` None: the task it was exported or saved for."""
    if is_artifact(model_id):
        artifact = Artifact.load(model_id)
        family, own_task = diffusion_record(artifact).family, artifact.metadata.task
    elif is_pipeline_folder(model_id):
        source = inspect_pipeline(model_id)
        family, own_task = source.family, source.task
    else:
        raise ArtifactError(f"{model_id} is neither an optibridge pipeline artifact nor a diffusers pipeline folder "
                            "(model_index.json); export one with `optibridge export --model SD_FOLDER OUT` and load OUT")
    wanted = normalize_task(task or own_task)
    if wanted not in family.tasks:
        raise UnsupportedModelError(f"the {family.name} family has no task {wanted!r}; choose one of: {', '.join(family.tasks)}")
    return family.tasks[wanted]


class OBAutoPipeline:
    """Picks the pipeline class on ``from_pretrained``; never instantiated itself."""

    task: ClassVar[str | None] = None
    prefix: ClassVar[str] = "OB"
    """Which names the concrete class is taken from: ``OB`` (optibridge's), ``ORT`` or ``OV`` (the peers' surfaces)."""
    source_module: ClassVar[str] = "optibridge.diffusion.pipelines"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} picks a pipeline class: call {type(self).__name__}.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Load ``model_id`` with the concrete pipeline class for this task and its family; the keyword
        arguments are that class's (``backend=``, ``export=``, session options; the peers' names take
        theirs: ``provider=``, ``ov_config=`` ...)."""
        name = cls.prefix + pipeline_class_name(model_id, kwargs.get("task") or cls.task)
        if cls.task is not None:
            kwargs.setdefault("task", cls.task)
        concrete = getattr(importlib.import_module(cls.source_module), name)
        return concrete.from_pretrained(model_id, **kwargs)


class OBDiffusionPipeline(OBAutoPipeline):
    """The pipeline for the task the artifact was exported for (or the diffusers folder was saved as)."""


class OBPipelineForText2Image(OBAutoPipeline):
    """Text to image: ``OBStableDiffusionPipeline``, ``OBStableDiffusionXLPipeline`` or ``OBLatentConsistencyModelPipeline``."""

    task = "text-to-image"


class OBPipelineForImage2Image(OBAutoPipeline):
    """Image to image: ``OBStableDiffusionImg2ImgPipeline`` or ``OBStableDiffusionXLImg2ImgPipeline``."""

    task = "image-to-image"


class OBPipelineForInpainting(OBAutoPipeline):
    """Inpainting: ``OBStableDiffusionInpaintPipeline`` or ``OBStableDiffusionXLInpaintPipeline``."""

    task = "inpainting"


AUTO_PIPELINES = {"DiffusionPipeline": OBDiffusionPipeline, "PipelineForText2Image": OBPipelineForText2Image,
                  "PipelineForImage2Image": OBPipelineForImage2Image, "PipelineForInpainting": OBPipelineForInpainting}
"""The task-named loaders by their name after the prefix (``ORTPipelineForText2Image`` → ``PipelineForText2Image``)."""


def auto_alias(name: str, prefix: str, module: str, peer: str) -> type:
    """A peer's task-named loader (``ORTPipelineForText2Image``): the same choice, the concrete class taken
    from ``module`` under ``prefix`` so that the peer's loading arguments apply. Kept in ``module``."""
    base = AUTO_PIPELINES[name[len(prefix):]]
    made = type(name, (base,), {"prefix": prefix, "source_module": module, "__module__": module,
                                "__doc__": f"{peer}-compatible name for :class:`optibridge.{base.__name__}`."})
    setattr(sys.modules[module], name, made)
    return made
