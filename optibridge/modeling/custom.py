"""A model class for graphs whose outputs no task class names (Optimum's ``ORTModelForCustomTasks``)."""

from __future__ import annotations

from typing import Any

from ..artifact import Artifact
from ..errors import ArtifactError
from .base import OBModel


class OBModelForCustomTasks(OBModel):
    """Any one-call artifact, every output of its graph returned by name.

    For what the task classes do not describe: a sentence-transformers export with its pooling
    (``token_embeddings``, ``sentence_embedding``), a model with an extra head, an ``model.onnx`` an
    Optimum custom export wrote. Inputs go by the graph's input names (checked as for every class);
    the result is a ``ModelOutput`` whose keys are the graph's output names in graph order, so
    ``outputs["pooler_output"]`` and ``outputs.pooler_output`` both work. Generative artifacts
    (a KV cache, several graphs) need their own classes and are refused."""

    task_name = ""  # any task: the graph's own outputs are the answer

    def __init__(self, sessions: dict[str, Any], artifact: Artifact, config: Any, *, keep_alive: Any = None) -> None:
        super().__init__(sessions, artifact, config, keep_alive=keep_alive)
        if self.task.kind != "encoder":
            from .tasks import task_class

            raise ArtifactError(f"{artifact.path} holds a {artifact.metadata.task} model ({self.task.kind} graphs, generated "
                                f"step by step); load it with {task_class(self.task.name).__name__}")
        from transformers.utils.generic import ModelOutput

        self._output_class = ModelOutput  # keys: the graph's outputs, whatever the task's class would hold
