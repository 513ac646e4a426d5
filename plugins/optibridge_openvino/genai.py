"""openvino-genai's ``LLMPipeline`` as the native greedy loop of a stateful OpenVINO decoder.

The stateful IR ``optimize --backend openvino`` writes has the interface openvino-genai expects
(input_ids, attention_mask, position_ids, beam_idx; logits; the KV cache in state variables), so
the pipeline is built from the artifact's own graph: its XML text and its weights, read through
the artifact's checked path (nothing else is read from the folder), compiled with the same
properties as the session (precision, KV-cache precision, threads). Token ids go in and come
out, so no tokenizer is needed: the pipeline gets an empty one from a private temporary folder.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from optibridge.errors import BackendError
from optibridge.modeling.native_generate import DecoderLayout, GreedyRequest

ENGINE = "openvino-genai"


def genai_available() -> bool:
    from optibridge.probing import module_present

    return module_present("openvino_genai")


class OpenVINOGenAIDecoder:
    """Greedy decoding of one stateful IR inside openvino-genai."""

    engine = ENGINE

    def __init__(self, xml_path: Any, device: str, config: dict[str, Any], layout: DecoderLayout) -> None:
        import openvino as ov
        import openvino_genai

        self.layout = layout
        self.properties = dict(config)  # what the pipeline is compiled with (precision, KV-cache precision, threads)
        self._weights = weights = np.memmap(xml_path.with_suffix(".bin"), dtype=np.uint8, mode="c")  # mapped copy-on-write (never written), not read in
        with tempfile.TemporaryDirectory() as empty:
            tokenizer = openvino_genai.Tokenizer(empty)  # token ids in and out: no tokenizer files needed
        try:
            self._pipeline = openvino_genai.LLMPipeline(xml_path.read_text(), ov.Tensor(weights, shared_memory=True), tokenizer, device, **config)
        except Exception as exc:  # openvino-genai raises RuntimeError for graphs it cannot drive
            raise BackendError(f"openvino-genai could not load {xml_path.name}: {str(exc).splitlines()[0]}") from exc
        # self._weights stays mapped: the compiled model may use the shared weights in place

    def greedy(self, request: GreedyRequest) -> list[int]:
        import openvino as ov
        import openvino_genai

        config = self._pipeline.get_generation_config()
        config.do_sample = False
        config.num_beams = 1
        config.max_new_tokens = request.max_new_tokens
        eos = set(request.eos_token_ids)  # ids inside the vocabulary (native_generate.emittable)
        # openvino-genai refuses a negative eos id and masks the eos id while min_new_tokens holds,
        # even with ignore_eos. Without eos, id 0 stands in, ignored, and nothing is masked.
        config.min_new_tokens = request.min_new_tokens if eos else 0
        config.stop_token_ids = eos or {0}
        config.eos_token_id = min(eos) if eos else 0
        config.ignore_eos = not eos
        inputs = openvino_genai.TokenizedInputs(ov.Tensor(request.prompt), ov.Tensor(np.ones_like(request.prompt)))
        try:
            tokens = list(self._pipeline.generate(inputs, config).tokens[0])
        except Exception as exc:  # openvino-genai raises RuntimeError for what it cannot run
            raise BackendError(f"openvino-genai could not run this call: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        return [int(t) for t in tokens]
