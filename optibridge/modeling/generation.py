"""What every generative OBModel shares so that transformers' ``GenerationMixin`` can drive it."""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig, GenerationMixin


def generation_config_for(artifact_path: Any, config: Any) -> GenerationConfig:
    try:
        return GenerationConfig.from_pretrained(artifact_path)
    except OSError:  # exported without a generation_config.json
        return GenerationConfig.from_model_config(config)


class GenerativeModel(GenerationMixin):
    """Mixed into OBModel subclasses whose ``forward`` runs one decoding step on exported graphs.

    Everything above ``forward`` — greedy, sampling, beam search, stopping criteria,
    ``GenerationConfig``, pipelines — is transformers' own code.
    """

    _is_stateful = False
    _supports_cache_class = True
    # generate() looks sub-models up through this prefix; an exported model has none.
    base_model_prefix = "_no_base_model"
    _generation_config: GenerationConfig

    def _init_generation(self, artifact_path: Any, config: Any) -> None:
        self._generation_config = generation_config_for(artifact_path, config)

    @property
    def generation_config(self) -> GenerationConfig:  # type: ignore[override]
        return self._generation_config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        self._generation_config = value

    def can_generate(self) -> bool:
        return True

    @classmethod
    def is_remote_code(cls) -> bool:
        return False

    def get_output_embeddings(self) -> None:
        return None

    def get_input_embeddings(self) -> None:
        return None

    # PyTorch-only knobs generate() toggles (MoE kernels); a compiled graph has none to switch.
    def get_experts_implementation(self) -> dict[str, str]:
        return {}

    def set_experts_implementation(self, _: Any) -> None:
        return None
