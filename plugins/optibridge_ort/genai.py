"""onnxruntime-genai's decode loop as the native greedy loop of an exported decoder with a KV cache.

onnxruntime-genai reads a ``genai_config.json`` next to the model. The artifact folder is
untrusted and may be read-only, so the config is written into a private temporary folder owned by
the decoder, naming the artifact's checked graph file by its absolute path; nothing else is read
from the artifact. The exported graph has onnxruntime-genai's generic decoder interface
(input_ids, attention_mask, position_ids, ``past_key_values.N.key/value`` → logits,
``present.N.key/value``), which its "llama" model type drives (its "gpt2" type expects a
different, combined cache layout).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

from optibridge.errors import BackendError
from optibridge.modeling.native_generate import DecoderLayout, GreedyRequest


def native_decoder_factory(artifact: Any, graph: str, threads: int | None, release_session: Callable[[], bool]) -> Any:
    """What an ORT session offers as ``native_decoder``: None where onnxruntime-genai is not installed.

    ``release_session`` frees the plain ``InferenceSession`` before onnxruntime-genai loads the graph
    into a session of its own: peak memory is then one copy of the weights, not two (the plain session
    is created again if transformers' loop or a plain forward() needs it later)."""
    path = artifact.graph_path(graph)
    # external-data files are listed in the manifest beside the graph ("model.onnx.data"); file() checks each lies inside
    data = tuple(artifact.file(name, "files") for name in artifact.metadata.files if name.startswith(path.name + "."))

    def before_load() -> None:
        artifact.graph_to_read(graph)  # loaded long after the artifact was: its files are checked again first
        release_session()

    def build(layout: DecoderLayout) -> OrtGenAIDecoder | None:
        return OrtGenAIDecoder(path, layout, threads, data, before_load=before_load) if genai_available() else None

    return build

ENGINE = "onnxruntime-genai"
GENERIC_DECODER_TYPE = "llama"


def genai_available() -> bool:
    from optibridge.probing import module_present

    return module_present("onnxruntime_genai")


def genai_config(graph: Path, layout: DecoderLayout, threads: int | None) -> dict[str, Any]:
    eos = list(layout.eos_token_ids)
    session_options: dict[str, Any] = {"provider_options": []}
    if threads:
        session_options["intra_op_num_threads"] = threads
    return {
        "model": {
            "type": GENERIC_DECODER_TYPE, "vocab_size": layout.vocab_size, "context_length": layout.context_length,
            "bos_token_id": eos[0], "eos_token_id": eos if len(eos) > 1 else eos[0],
            # onnxruntime-genai masks out prompt tokens equal to pad_token_id; prompts are never padded
            # here (batch 1), so use an id outside the vocabulary rather than eos, which prompts may hold.
            # It only compares ids with it, except that a finished row of a batch is fed pad tokens while
            # other rows go on (search.cpp, PadIfAlreadyEOS); at batch 1 the loop ends with its only row.
            "pad_token_id": layout.vocab_size,
            "decoder": {
                "filename": graph.name, "head_size": layout.head_dim, "hidden_size": layout.head_dim * layout.num_heads,
                "num_attention_heads": layout.num_heads, "num_key_value_heads": layout.num_heads,
                "num_hidden_layers": layout.num_layers, "session_options": session_options,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                           "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"},
            },
        },
        "search": {"do_sample": False, "num_beams": 1, "max_length": layout.context_length, "past_present_share_buffer": False},
    }


class OrtGenAIDecoder:
    """Greedy decoding of one exported decoder graph inside onnxruntime-genai."""

    engine = ENGINE

    def __init__(self, graph: Path, layout: DecoderLayout, threads: int | None, external_data_files: tuple[Path, ...] = (),
                 before_load: Callable[[], object] | None = None) -> None:
        import onnxruntime_genai as og

        if not layout.eos_token_ids:  # it refuses -1 and has no "ignore eos" switch
            raise BackendError("onnxruntime-genai needs an end-of-sequence id inside the vocabulary and this model has none "
                               "(generation_config.eos_token_id); transformers' loop runs it")
        self.layout = layout
        self.fixed_eos_token_ids = layout.eos_token_ids  # read from genai_config.json at load, not per call
        self._folder = tempfile.TemporaryDirectory(prefix="optibridge-ortgenai-")
        folder = Path(self._folder.name)
        (folder / "genai_config.json").write_text(json.dumps(genai_config(graph, layout, threads)))
        # onnxruntime-genai takes only paths inside its folder: link the checked graph file (and its
        # external-data files, which the manifest lists beside it) into the private folder.
        for file in (graph, *external_data_files):
            (folder / file.name).symlink_to(file.resolve())
        if before_load is not None:
            before_load()
        try:
            self._model = og.Model(self._folder.name)
        except Exception as exc:  # onnxruntime-genai raises RuntimeError for graphs it cannot drive
            raise BackendError(f"onnxruntime-genai could not load {graph.name}: {str(exc).splitlines()[0]}") from exc

    def greedy(self, request: GreedyRequest) -> list[int]:
        import onnxruntime_genai as og

        length = request.prompt.shape[1]
        params = og.GeneratorParams(self._model)
        params.set_search_options(max_length=length + request.max_new_tokens, min_length=length + request.min_new_tokens,
                                  do_sample=False, num_beams=1)
        try:
            generator = og.Generator(self._model, params)
            generator.append_tokens(request.prompt)
            steps = 0
            while not generator.is_done():
                generator.generate_next_token()
                steps += 1
            new = [int(t) for t in generator.get_sequence(0)[length:]]
            # onnxruntime-genai stops on eos without appending it; transformers returns it, so add it back
            if steps == len(new) + 1 and (last := int(generator.get_next_tokens()[0])) in self.fixed_eos_token_ids:
                new.append(last)
        except Exception as exc:  # e.g. "Model input was not found" for a graph without position_ids
            raise BackendError(f"onnxruntime-genai could not run this graph: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        return new
