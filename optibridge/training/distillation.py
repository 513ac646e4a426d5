"""Knowledge distillation: the teacher check (before training) and the mixed loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .config import DistillationConfig, TrainingConfigError


def _head(config: Any) -> str:
    """The task head's class suffix (``ForSequenceClassification``), from ``config.architectures``."""
    for name in getattr(config, "architectures", None) or ():
        index = name.find("For")
        if index > 0:
            return str(name[index:])
    return "Model"


def load_teacher(config: DistillationConfig, student: Any) -> Any:
    """The teacher model in eval mode, checked against the student: same task head, labels and vocabulary."""
    teacher = config.teacher
    if isinstance(teacher, str):
        import transformers

        cls = type(student)
        auto = getattr(transformers, "AutoModelFor" + _head(student.config)[3:], None) if _head(student.config) != "Model" else None
        try:
            teacher = (auto or cls).from_pretrained(teacher)
        except (OSError, ValueError) as exc:
            raise TrainingConfigError(f"could not load the teacher {config.teacher!r} as {(auto or cls).__name__}: {exc}") from exc
    check_teacher(teacher, student)
    return teacher.eval()


def check_teacher(teacher: Any, student: Any) -> None:
    """Raise :class:`TrainingConfigError` when the teacher cannot teach this student."""
    t, s = teacher.config, student.config
    t_head, s_head = _head(t), _head(s)
    if t_head != s_head:
        raise TrainingConfigError(
            f"the teacher is a {type(teacher).__name__} ({t_head}) and the student a {type(student).__name__} ({s_head}): "
            "distillation needs a teacher of the same task; fine-tune the teacher for the student's task first"
        )
    if getattr(t, "num_labels", None) != getattr(s, "num_labels", None):
        raise TrainingConfigError(
            f"the teacher has {t.num_labels} labels and the student {s.num_labels}: their logits cannot be compared; "
            "use a teacher trained on the same label set"
        )
    if getattr(t, "vocab_size", None) != getattr(s, "vocab_size", None):
        raise TrainingConfigError(
            f"the teacher's vocabulary has {getattr(t, 'vocab_size', None)} tokens and the student's {getattr(s, 'vocab_size', None)}: "
            "both must read the same token ids (the same tokenizer)"
        )


def distillation_loss(
    config: DistillationConfig, task_loss: torch.Tensor, student_out: Any, teacher_out: Any, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - alpha) * task + alpha * T^2 * KL(teacher_T || student_T) [+ hidden-state MSE]; with its parts for logging."""
    temperature = config.temperature
    s_logits = student_out.logits / temperature
    t_logits = teacher_out.logits.detach() / temperature
    # KL(p_teacher || p_student), batch mean; T^2 keeps its gradients on the task loss's scale.
    kl = F.kl_div(
        F.log_softmax(s_logits.reshape(-1, s_logits.shape[-1]), dim=-1),
        F.log_softmax(t_logits.reshape(-1, t_logits.shape[-1]), dim=-1),
        log_target=True, reduction="batchmean",
    ) * temperature**2
    loss = (1.0 - config.alpha) * task_loss + config.alpha * kl
    parts = {"task_loss": float(task_loss.detach()), "kd_loss": float(kl.detach())}
    if config.hidden_states:
        mse = hidden_state_mse(student_out.hidden_states, teacher_out.hidden_states, mask)
        if mse is not None:
            loss = loss + config.hidden_weight * mse
            parts["hidden_mse"] = float(mse.detach())
    return loss, parts


def hidden_state_mse(student: Any, teacher: Any, mask: torch.Tensor | None) -> torch.Tensor | None:
    """MSE between student layer i and teacher layer i * (teacher layers / student layers), where shapes match."""
    if not student or not teacher:
        return None
    ratio = (len(teacher) - 1) / max(len(student) - 1, 1)
    terms = []
    for i, s_hidden in enumerate(student):
        t_hidden = teacher[round(i * ratio)].detach()
        if t_hidden.shape != s_hidden.shape:
            continue
        diff = (s_hidden - t_hidden) ** 2
        if mask is not None and mask.shape == diff.shape[:2]:
            weights = mask.unsqueeze(-1).to(diff.dtype)
            terms.append((diff * weights).sum() / (weights.sum() * diff.shape[-1]).clamp(min=1))
        else:
            terms.append(diff.mean())
    return torch.stack(terms).mean() if terms else None
