"""Model inputs for accuracy checks and calibration, built from an artifact's own files.

Text models get real sentences through the artifact's tokenizer (random token ids inside the
vocabulary when the folder has none); vision models get random ``pixel_values``; any other
graph input is filled from its recorded dtype and shape. Validation batches never share a
shape with calibration batches: calibration runs one sample at a time, validation a batch of
several padded to a length no calibration batch had.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..artifact import Artifact, GraphSpec, TensorSpec
from ..tokenizer_check import usable_tokenizer

# Two disjoint sets: calibration (and SmoothQuant statistics) never sees a validation sentence.
CALIBRATION_SENTENCES: tuple[str, ...] = (
    "The weather forecast says it will be sunny tomorrow.",
    "Can you help me find a cheap hotel near the station?",
    "Neural networks learn representations from large amounts of data.",
    "I ordered a pizza but they delivered pasta instead.",
    "The river flooded the village after three days of heavy rain.",
    "Thank you!",
    "Where is the nearest pharmacy?",
    "Stock prices rose after the company reported strong earnings.",
    "She finished the marathon in under four hours.",
    "This laptop is too heavy to carry around all day.",
    "The meeting has been moved to Thursday at 10am.",
    "Birds migrate south for the winter to find food.",
    "Please remember to water the plants while I'm away.",
    "The novel tells the story of a family across three generations.",
    "Our team won the championship for the second year in a row.",
    "Add salt, pepper and a little olive oil, then stir well.",
    "The museum is free to visit on the first Sunday of each month.",
    "My phone battery dies after only a few hours.",
    "Scientists discovered a new species of frog in the rainforest.",
    "Is this seat taken?",
    "Good morning",
    "The contract must be signed by both parties before the end of the month.",
    "He apologized for arriving late to the interview.",
    "The software update fixed several security vulnerabilities.",
    "Traffic was terrible on the highway this morning.",
    "I prefer tea to coffee in the afternoon.",
    "The garden is full of roses and tulips in the spring.",
    "Children should eat more vegetables and less sugar.",
    "The train to Berlin departs from platform 7 at 14:35.",
    "Customer reviews praised the fast shipping and friendly support.",
    "Le chat dort sur le canapé.",
    "Wie spät ist es?",
    "for i in range(10): print(i)",
    "Temperature: 21.5 C, humidity 40%, wind 12 km/h.",
    "The mountain trail is closed because of falling rocks.",
    "We need to reduce our carbon emissions by half before 2030.",
    "The professor explained the theorem with a simple drawing on the board.",
    "Nice!",
    "An unexpected error occurred while saving your changes; please try again later.",
    "After years of negotiations, the two countries finally agreed on a trade deal that lowers tariffs "
    "on agricultural products and machinery.",
)
VALIDATION_SENTENCES: tuple[str, ...] = (
    "Ok.",
    "The quick brown fox jumps over the lazy dog.",
    "How much does a ticket to the concert cost?",
    "Renewable energy sources include wind, solar and hydroelectric power.",
    "I can't believe how fast this year went by!",
    "The patient's blood pressure returned to normal after the treatment.",
    "Yes",
    "Our flight was cancelled, so we spent the night at the airport.",
    "The library will extend its opening hours during exam season.",
    "A long time ago, in a small village by the sea, there lived an old fisherman who told stories "
    "about a golden fish that could grant wishes.",
    "Machine translation has improved dramatically over the last decade.",
    "Let's meet at the cafe around noon.",
    "Invoice #4821: total due $1,250.00 by March 3.",
    "The cathedral took nearly two centuries to complete.",
    "Please turn off your phones during the performance.",
    "What is the difference between weather and climate?",
)
# For measuring accuracy (tests, benchmarks): never used for calibration or smoothing. Varied on
# purpose: one-word replies (the hardest case for int8: a mean over 3 tokens, two of them
# [CLS]/[SEP]), long sentences, numbers, code, URLs, other languages.
HELD_OUT_SENTENCES: tuple[str, ...] = (
    "Ok.", "Yes", "Thanks!", "No way.", "Hello world", "wow",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "How do I reset my password?",
    "It rained all day.",
    "Buy two, get one free!",
    "The cat sat on the mat.",
    "Which train goes to the airport on Sundays?",
    "Sentence embeddings map text to vectors so that similar meanings end up close together.",
    "ONNX Runtime executes the exported graph with fused attention and layer-norm kernels.",
    "Our quarterly revenue grew by twelve percent, driven mostly by subscriptions in Europe and Asia.",
    "She played the violin in the orchestra for twenty years before becoming its conductor.",
    "Error: the file could not be opened because it is being used by another process.",
    "Mix the flour and the butter, then add the eggs one at a time.",
    "The museum's new wing houses a collection of early photographs of the harbour.",
    "A much longer sentence, with punctuation, numbers like 3.14159 and 42, and words that the tokenizer "
    "splits into several word pieces: internationalization, electroencephalography.",
    "The committee postponed its decision until the next quarterly meeting, citing incomplete budget "
    "figures and the absence of two members who had been delayed by the storm.",
    "I love this movie.", "I hate this movie.", "This movie was okay, I guess.",
    "What time is it in Tokyo right now?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Please send me the report by Friday afternoon.",
    "He scored the winning goal in the final minute of extra time.",
    "The recipe calls for two cups of sugar and a pinch of salt.",
    "Quantum computers use qubits, which can be in superpositions of states.",
    "My flight was delayed by three hours because of fog.",
    "The new smartphone has a bigger battery and a faster processor.",
    "Can you recommend a good book about medieval history?",
    "The patient was admitted to the hospital with a high fever.",
    "Dogs are loyal animals and make great companions.",
    "The library is closed on public holidays.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "La tour Eiffel est le monument le plus visité de Paris.",
    "def add(a, b): return a + b",
    "SELECT name, age FROM users WHERE age > 30 ORDER BY name;",
    "https://example.com/path?query=1&other=two",
    "Call me at 555-0199 or email support@example.com.",
    "The treaty was signed in 1648, ending thirty years of war.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "Why is the sky blue?",
    "The children built a sandcastle on the beach.",
    "Battery life: 10 hours. Weight: 1.2 kg. Price: $999.",
    "The algorithm runs in O(n log n) time on average.",
    "Snow covered the mountains for most of the winter.",
    "I'm not sure whether to take the job offer or stay where I am.",
    "Volcanoes can remain dormant for centuries before erupting again.",
    "Turn left at the second traffic light, then continue straight for two kilometres.",
    "The economy, which had been growing steadily for a decade, slowed abruptly when energy prices tripled "
    "over a single winter, forcing factories across the region to cut shifts and postpone investments.",
)
VALIDATION_BATCH = len(VALIDATION_SENTENCES)
RANDOM_LENGTH = 24
"""Sequence length of random-token batches when the artifact has no tokenizer."""


def load_tokenizer(folder: Path) -> Any | None:
    """The tokenizer saved in an artifact folder, or None (a folder without one is legitimate)."""
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    except Exception:  # a broken or custom tokenizer: fall back to random ids, said in the report
        return None
    if not usable_tokenizer(tokenizer):  # e.g. an empty vocabulary: every text would be [] (zero tokens)
        return None
    if tokenizer.pad_token is None:
        # Decoder LM tokenizers (GPT-2, Llama) have no pad token; padded rows are masked out, so
        # any id works: end-of-sequence is the usual choice, and what generate() uses too.
        if tokenizer.eos_token is None:
            return None
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_config(folder: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text())
        return config
    except (OSError, ValueError):
        return {}


def text_length_limit(artifact: Artifact, wanted: int) -> int:
    """``wanted`` tokens, or fewer where the model's learned position table is shorter (CLIP's text
    tower has 77 positions; RoBERTa-style tables start at padding_idx + 1): a longer sample would not
    run at all. Read from config.json (``text_config`` first, for text-and-image models)."""
    from ..modeling.guards import PADDING_OFFSET_POSITIONS, positive_int

    config = model_config(artifact.path)
    for scope in (config.get("text_config"), config):
        if not isinstance(scope, dict):
            continue
        positions = positive_int(scope.get("max_position_embeddings"))
        if positions is not None:
            if (scope.get("model_type") or config.get("model_type")) in PADDING_OFFSET_POSITIONS:
                pad = scope.get("pad_token_id")
                positions -= (pad if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0 else 0) + 1
            return max(2, min(wanted, positions))
    return wanted


def is_text_graph(graph: GraphSpec) -> bool:
    return "input_ids" in graph.input_names


def is_vision_graph(graph: GraphSpec) -> bool:
    return "pixel_values" in graph.input_names


def is_waveform_graph(graph: GraphSpec) -> bool:
    return "input_values" in graph.input_names


MAX_SAMPLES_PER_STEP = 16_000
"""One second of 16 kHz audio per sequence step at most, whatever an artifact's config.json says."""


def waveform_samples_per_step(artifact: Artifact) -> int:
    """Waveform samples per sequence step for the artifact's audio graph, as the exporter traced it
    (400, more for an x-vector's TDNN): a wav2vec2 feature encoder needs 400 samples for its first frame,
    so a "sequence" of 24 random samples would not run at all."""
    from types import SimpleNamespace

    from ..exporter.inputs import SAMPLES_PER_STEP, samples_per_step
    from ..tasks import TASKS

    task = TASKS.get(artifact.metadata.task)
    if task is None:
        return SAMPLES_PER_STEP
    try:  # config.json is the artifact's, untrusted: odd values fall back to the default
        found = samples_per_step(task, SimpleNamespace(**model_config(artifact.path)))
    except (TypeError, ValueError, OverflowError):
        return SAMPLES_PER_STEP
    return min(max(found, SAMPLES_PER_STEP), MAX_SAMPLES_PER_STEP)


@dataclass
class Batch:
    """One feed for a graph, the mask of real (non-padding) positions, and where it came from."""

    feed: dict[str, np.ndarray]
    mask: np.ndarray | None
    description: str

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.feed.items()}


PAST_LENGTH = 4
"""Length given to ``past_*`` axes (KV caches): validation runs a decoder step after 4 cached tokens."""
OTHER_LENGTH = 7
"""Length of any other named axis (e.g. the encoder length a decoder graph reads)."""


def axis_sizes(graph: GraphSpec, batch: int, sequence: int, choices: int = 1,
               image_size: tuple[int, int] | None = None) -> dict[str, int]:
    """A size for every named axis of the graph's inputs, consistent across inputs.

    The token axis of ``input_ids`` gets ``sequence``; ``past_*`` axes :data:`PAST_LENGTH`;
    ``total_sequence_length`` (attention mask of a decoder with cache) past + sequence; the
    height/width axes of a dynamic ``pixel_values`` get ``image_size`` (the size the artifact records).
    """
    sizes = {"batch_size": batch, "num_choices": choices, "sequence_length": sequence}
    ids = next((s for s in graph.inputs if s.name == "input_ids"), None)
    if ids is not None and ids.shape and isinstance(ids.shape[-1], str):
        sizes[ids.shape[-1]] = sequence
    pixels = next((s for s in graph.inputs if s.name == "pixel_values"), None)
    if image_size is not None and pixels is not None and len(pixels.shape) == 4:
        for axis, size in zip(pixels.shape[2:], image_size):
            if isinstance(axis, str):
                sizes[axis] = int(size)
    for spec in graph.inputs:
        for axis in spec.shape:
            if isinstance(axis, str) and axis not in sizes:
                sizes[axis] = PAST_LENGTH if axis.startswith("past") else OTHER_LENGTH
    if "total_sequence_length" in sizes:
        past = next((v for k, v in sizes.items() if k.startswith("past")), 0)
        sizes["total_sequence_length"] = past + sequence
    return sizes


def fill_input(spec: TensorSpec, sizes: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """A value for an input nothing else knows how to make, from its recorded dtype and shape.

    Floats are standard-normal; masks (``*attention_mask``) all ones; ``position_ids`` count on
    from the cached length; other integers zero; booleans True.
    """
    shape = tuple(sizes.get(d, OTHER_LENGTH) if isinstance(d, str) else (d if d > 0 else 1) for d in spec.shape)
    dtype = np.dtype(spec.dtype)
    if spec.name == "position_ids" and len(shape) >= 1:
        past = next((v for k, v in sizes.items() if k.startswith("past")), 0)
        positions: np.ndarray = np.broadcast_to(np.arange(past, past + shape[-1], dtype=dtype), shape).copy()
        return positions
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_ or spec.name.endswith("attention_mask"):
        return np.ones(shape, dtype=dtype)
    return np.zeros(shape, dtype=dtype)


def choices_of(graph: GraphSpec) -> int:
    """2 for a multiple-choice graph (``input_ids`` of rank 3: batch, choices, tokens), else 1."""
    ids = next((s for s in graph.inputs if s.name == "input_ids"), None)
    return 2 if ids is not None and len(ids.shape) == 3 else 1


def token_batch(
    graph: GraphSpec,
    tokenizer: Any | None,
    texts: Sequence[str],
    *,
    vocab_size: int,
    pad_to: int | None = None,
    max_length: int = 128,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
) -> Batch:
    """Tokenize ``texts`` (padded to their longest, or to ``pad_to``) into a feed for ``graph``.

    For a multiple-choice graph (``input_ids`` of rank 3) consecutive texts form the choices of
    one example. Without a tokenizer, random ids inside the vocabulary with right padding. A graph
    that also takes images (CLIP) gets random pixels of ``image_size`` (the size the artifact records).
    """
    rng = np.random.default_rng(seed)
    choices = choices_of(graph)
    count = len(texts) - len(texts) % choices if choices > 1 else len(texts)
    texts = list(texts[:count])
    mask: np.ndarray | None  # the padding mask, when the batch has one
    if tokenizer is not None:
        kwargs: dict[str, Any] = {"truncation": True, "max_length": max_length, "return_tensors": "np"}
        if pad_to is None:
            kwargs["padding"] = True
        else:
            kwargs.update(padding="max_length", max_length=max(pad_to, 2))
        encoded = {k: np.asarray(v) for k, v in tokenizer(texts, **kwargs).items()}
        source = f"{len(texts)} sentence(s) through the artifact's tokenizer"
    else:
        length = pad_to or RANDOM_LENGTH
        low = min(5, vocab_size - 1)
        ids = rng.integers(low, vocab_size, size=(len(texts), length))
        mask = np.ones_like(ids)
        for row in range(1, len(texts), 2):  # every other row right-padded to a random length
            keep = int(rng.integers(2, length + 1))
            mask[row, keep:] = 0
            ids[row, keep:] = 0
        encoded = {"input_ids": ids, "attention_mask": mask}
        source = f"{len(texts)} row(s) of seeded random token ids inside the vocabulary (seed {seed}; the artifact has no usable tokenizer)"
    batch = len(texts) // choices
    if choices > 1:
        encoded = {k: v.reshape(batch, choices, v.shape[-1]) for k, v in encoded.items()}
    sequence = encoded["input_ids"].shape[-1]
    sizes = axis_sizes(graph, batch, sequence, choices, image_size=image_size)
    mask = encoded.get("attention_mask")
    feed = {}
    for spec in graph.inputs:
        if spec.name == "attention_mask" and mask is not None and spec.shape and spec.shape[-1] == "total_sequence_length":
            cached = np.ones(mask.shape[:-1] + (sizes["total_sequence_length"] - sequence,), dtype=mask.dtype)
            feed[spec.name] = np.concatenate([cached, mask], axis=-1).astype(spec.dtype)  # the cache holds real tokens
        elif spec.name in encoded:
            feed[spec.name] = encoded[spec.name].astype(spec.dtype)
        else:
            feed[spec.name] = fill_input(spec, sizes, rng)
    return Batch(feed, None if mask is None else np.asarray(mask), source)


def recorded_image_size(artifact: Artifact, which: str = "traced") -> tuple[int, int] | None:
    """The (height, width) the exporter traced a vision graph at (``extra["image_size"]``): the size
    random pixels get when the graph's height/width are dynamic (a sequence length would be too small).
    ``which="validated"``: the model's own size, the one PyTorch runs without ``interpolate_pos_encoding``
    (what ``bench`` feeds both sides)."""
    record = artifact.metadata.extra.get("image_size")
    traced = record.get(which) if isinstance(record, dict) else None
    if isinstance(traced, (list, tuple)) and len(traced) == 2 and all(isinstance(v, int) and v > 0 for v in traced):
        return int(traced[0]), int(traced[1])
    return None


def random_batch(graph: GraphSpec, batch: int, seed: int = 0, sequence: int = RANDOM_LENGTH,
                 image_size: tuple[int, int] | None = None, samples_per_step: int = 1) -> Batch:
    """Inputs for a graph that takes neither token ids nor pixels (or pixels: standard-normal); a waveform
    graph gets ``sequence`` steps of ``samples_per_step`` samples (see :func:`waveform_samples_per_step`)."""
    rng = np.random.default_rng(seed)
    if is_waveform_graph(graph):
        sequence *= samples_per_step
    sizes = axis_sizes(graph, batch, sequence, image_size=image_size)
    feed = {spec.name: fill_input(spec, sizes, rng) for spec in graph.inputs}
    what = "random pixel_values" if is_vision_graph(graph) else "random inputs from the recorded dtypes and shapes"
    return Batch(feed, None, f"{batch} row(s) of {what}")


def validation_batch(artifact: Artifact, graph_name: str, avoid_lengths: Iterable[int] = (), seed: int = 1) -> Batch:
    """Fresh inputs for comparing a transformed graph with its reference: several rows at once,
    padded to a sequence length no calibration batch used."""
    graph = artifact.metadata.graphs[graph_name]
    avoid = set(avoid_lengths)
    if "diffusion" in artifact.metadata.extra:  # a pipeline's graphs: prompts at its token length, valid latent sizes
        from ..diffusion.samples import diffusion_batch

        feed, what = diffusion_batch(artifact, graph_name, seed)
        return Batch(feed, None, what)
    if is_text_graph(graph):
        tokenizer = load_tokenizer(artifact.path)
        vocab = int(model_config(artifact.path).get("vocab_size") or 100)
        pixels, longest = recorded_image_size(artifact), text_length_limit(artifact, 128)
        first = token_batch(graph, tokenizer, VALIDATION_SENTENCES, vocab_size=vocab, seed=seed, image_size=pixels, max_length=longest)
        length = first.feed["input_ids"].shape[-1]
        if length not in avoid:
            return first
        # a length calibration never used: longer, or shorter where the position table ends (CLIP: 77)
        longer = next((n for n in range(length + 1, longest + 1) if n not in avoid), None)
        length = longer or next((n for n in range(length - 1, 1, -1) if n not in avoid), length)
        return token_batch(graph, tokenizer, VALIDATION_SENTENCES, vocab_size=vocab, pad_to=length, seed=seed, image_size=pixels,
                           max_length=longest)
    return random_batch(graph, batch=3, seed=seed, image_size=recorded_image_size(artifact),
                        samples_per_step=waveform_samples_per_step(artifact))
