"""``OBTrainer``: ``transformers.Trainer`` plus QAT, pruning and distillation, ending in an optibridge artifact.

``train()`` runs in up to two phases:

1. float fine-tuning for ``args.num_train_epochs`` (with distillation, and pruning on its schedule;
   pruned heads/channels are cut out when the phase ends);
2. with ``quantization_config``: NNCF fake quantizers are inserted into that float model (kept as
   the reference) and training continues for ``QATConfig.epochs`` epochs.

``save_model(out)`` writes an artifact (see :mod:`optibridge.training.artifact`).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from .config import DistillationConfig, PruningConfig, QATConfig, TrainingConfigError
from .distillation import distillation_loss, load_teacher
from .pruning import Pruner, check_prunable


class _PruningCallback(TrainerCallback):
    def __init__(self, trainer: "OBTrainer") -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        pruner = self.trainer.pruner
        if pruner is not None and self.trainer.phase == "float":
            pruner.step(state.global_step, state.max_steps)
        elif pruner is not None and pruner.weight_masks:
            pruner.apply()  # keep unstructured zeros at zero through the QAT phase


class OBTrainer(Trainer):
    """A ``transformers.Trainer`` whose result is a compressed optibridge artifact.

    Every config is checked here, before training: a teacher of another task or vocabulary, or a
    model that the requested pruning does not support, is a :class:`TrainingConfigError`.
    """

    def __init__(
        self,
        *args: Any,
        quantization_config: QATConfig | None = None,
        pruning_config: PruningConfig | None = None,
        distillation_config: DistillationConfig | None = None,
        task: str | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value, cls in (("quantization_config", quantization_config, QATConfig),
                                 ("pruning_config", pruning_config, PruningConfig),
                                 ("distillation_config", distillation_config, DistillationConfig)):
            if value is not None and not isinstance(value, cls):
                raise TrainingConfigError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
        # Checked before Trainer.__init__, which already creates the output folder.
        model = kwargs.get("model", args[0] if args else None)
        teacher = load_teacher(distillation_config, model) if distillation_config and model is not None else None
        if pruning_config is not None and model is not None:
            check_prunable(model, pruning_config)
        super().__init__(*args, **kwargs)
        self.quantization_config = quantization_config
        self.pruning_config = pruning_config
        self.distillation_config = distillation_config
        self.task = task
        self.teacher = teacher.to(self.args.device) if teacher is not None else None
        self.pruner: Pruner | None = None
        self.float_model: Any = None
        self.phase = "float"
        self.history: list[dict[str, Any]] = []
        """One record per phase: its name, epochs, seconds, and the evaluation metrics at its end."""
        self.add_callback(_PruningCallback(self))

    # -- training ----------------------------------------------------------------------------

    def train(self, *args: Any, **kwargs: Any) -> Any:
        if self.pruning_config is not None:
            self.pruner = Pruner(self.model, self.pruning_config)
        self.phase = "float"
        result = self._run_phase("float", self.args.num_train_epochs, self.args.learning_rate, args, kwargs)
        if self.pruner is not None:
            self.pruner.finalize()
        if self.quantization_config is not None:
            result = self._quantization_phase()
        return result

    def _run_phase(self, phase: str, epochs: float, learning_rate: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        started = time.perf_counter()
        result = super().train(*args, **kwargs)
        record: dict[str, Any] = {"phase": phase, "epochs": epochs, "learning_rate": learning_rate,
                                  "seconds": round(time.perf_counter() - started, 1), "train_loss": result.training_loss}
        if self.eval_dataset is not None:
            last = self.state.log_history[-2] if len(self.state.log_history) > 1 else {}
            # Evaluated at the last step already (eval_strategy="epoch"): reuse it rather than run it twice.
            record["eval"] = ({k: v for k, v in last.items() if k.startswith("eval_")}
                              if "eval_loss" in last and last.get("step") == self.state.global_step else self.evaluate())
        self.history.append(record)
        return result

    def _quantization_phase(self) -> Any:
        from .qat import insert_fake_quantizers, reference_kernels

        config = self.quantization_config
        assert config is not None and self.model is not None
        self.float_model = copy.deepcopy(self.model).eval()
        samples: list[dict[str, Any]] = []
        for batch in self.get_train_dataloader():
            samples.extend({k: v[i:i + 1] for k, v in batch.items()} for i in range(len(next(iter(batch.values())))))
            if len(samples) >= config.calibration_samples:
                break
        self.model = insert_fake_quantizers(self.model, samples[: config.calibration_samples], config)
        self.model_wrapped = self.model
        self.optimizer, self.lr_scheduler = None, None  # new parameters (quantizer ranges): a new optimizer
        float_args = self.args
        learning_rate = config.learning_rate or float_args.learning_rate / 10
        # A shallow copy: building new TrainingArguments would reset accelerate's process state.
        self.args = copy.copy(float_args)
        self.args.num_train_epochs, self.args.learning_rate, self.args.warmup_steps = config.epochs, learning_rate, 0
        self.phase = "qat"
        try:
            with reference_kernels():
                return self._run_phase("qat", config.epochs, learning_rate, (), {})
        finally:
            self.args = float_args

    def prediction_step(self, *args: Any, **kwargs: Any) -> Any:
        if self.phase == "qat":  # evaluate() and predict() on the fake-quantized model
            from .qat import reference_kernels

            with reference_kernels():
                return super().prediction_step(*args, **kwargs)
        return super().prediction_step(*args, **kwargs)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        if self.teacher is None or not model.training:  # evaluation reports the task loss alone
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        config = self.distillation_config
        assert config is not None
        wants_hidden = config.hidden_states
        outputs = model(**inputs, output_hidden_states=wants_hidden)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        with torch.no_grad():
            teacher_outputs = self.teacher(**model_inputs, output_hidden_states=wants_hidden)
        loss, parts = distillation_loss(config, outputs.loss, outputs, teacher_outputs, inputs.get("attention_mask"))
        return (loss, outputs) if return_outputs else loss

    # -- saving ------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> Any:
        """Write an optibridge artifact into ``output_dir`` and return it (checkpoints during training stay transformers folders)."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        if output_dir is None:
            raise TrainingConfigError("save_model needs an output folder for the artifact")
        return self.save_artifact(output_dir)

    def save_artifact(self, output_dir: str | Path, on_step: Any = None) -> Any:
        from .artifact import write_training_artifact
        from .qat import weight_bits

        step: dict[str, Any] = {
            "step": "train",
            "phases": self.history,
            "qat": ({"framework": "nncf", "config": self.quantization_config.to_dict(), "weight_bits": weight_bits(self.quantization_config)}
                    if self.quantization_config else None),
            "pruning": ({"config": self.pruning_config.to_dict(), **(self.pruner.finalize() if self.pruner else {})}
                        if self.pruning_config else None),
            "distillation": self.distillation_config.to_dict() if self.distillation_config else None,
        }
        eval_batches = list(self.get_eval_dataloader()) if self.eval_dataset is not None else []
        eval_batches = [{k: v.cpu() for k, v in batch.items()} for batch in eval_batches]
        preprocessor = self.processing_class if hasattr(self.processing_class, "save_pretrained") else None
        qat_atol = self.quantization_config.validation_atol if self.quantization_config else 0.0
        return write_training_artifact(
            output_dir, model=self.model, float_model=self.float_model, task=self.task, preprocessor=preprocessor,
            step=step, eval_batches=eval_batches, qat_atol=qat_atol, on_step=on_step,
        )
