"""One benchmark process: load one candidate, then measure it at every shape against PyTorch eager.

Run by :mod:`optibridge.bench.runner` as ``python -m optibridge.bench.measure SPEC.json RESULTS.jsonl``,
never in the caller's process: a crash or hang here becomes a failed cell there. Each shape's
result is appended to RESULTS.jsonl as soon as it is measured (one JSON object per line), so a
crash at batch 8 keeps the batch-1 result, and the runner's timeout applies per shape.

Per shape: the candidate and the PyTorch model get the same inputs; accuracy is compared on
their outputs (padding positions left out); then both are timed interleaved with
``measure_interleaved(..., settle=1)``, so the speed-up comes from one run on one machine state.
Generative models (text-generation, text2text-generation, automatic-speech-recognition) are timed
on greedy ``generate`` of ``new_tokens`` tokens and on the prefill forward pass (for seq2seq and
speech: the encoder and the first decoder step); per-token decode latency is derived from the two
medians. Each timed ``generate`` call gets the next of a few prompts of the same shape, every token
different from the call before's: openvino-genai keeps the last prompt's KV cache and skips the
prefill when the same prompt comes again, which one prompt timed over and over would reward and
real traffic does not (GPT-2-small, 32-token prompt, on a 2-core EPYC: first token 60-75 ms for a
new prompt, 10-13 ms for a repeated one). Speech models get random log-mel features of the encoder's fixed size (Whisper's 30 s
window): decoding speed does not depend on what is said.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ArtifactError
from ..tasks import TASKS
from .schema import BASELINE, Generation, Latency
from .timing import TimingStats, measure_interleaved

# From the task table, not spelled again: a task the exporter gains is benched the same way.
GENERATIVE_TASKS = tuple(name for name, task in TASKS.items() if task.kind != "encoder")
ENCODER_DECODER_TASKS = tuple(name for name, task in TASKS.items() if task.kind == "seq2seq")
SPEECH_TASKS = tuple(name for name, task in TASKS.items() if task.modality == "speech")
WAVEFORM_TASKS = tuple(name for name, task in TASKS.items() if task.modality == "audio")


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory, in MB.

    ``VmHWM`` from /proc/self/status where there is one: ``ru_maxrss`` survives ``exec`` on Linux,
    so a child of a big parent process would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def _emit(out: Path, event: dict[str, Any]) -> None:
    with out.open("a") as handle:
        handle.write(json.dumps(event) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _one_line(exc: BaseException) -> str:
    from ..errors import first_line

    return f"{type(exc).__name__}: {first_line(exc)}"


def encoder_inputs(artifact: Any, batch: int, seq: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Real sentences through the artifact's tokenizer, padded/truncated to exactly ``seq`` tokens
    (random ids in the vocabulary without a tokenizer); random pixels for vision models, at the model's own
    size (PyTorch runs ViT-style models at another only with interpolate_pos_encoding); for waveform
    models ``seq`` steps of 400 samples (25 ms of 16 kHz audio each; more for an x-vector's TDNN)."""
    from ..steps.samples import (VALIDATION_SENTENCES, choices_of, is_text_graph, load_tokenizer, model_config, random_batch,
                                 recorded_image_size, text_length_limit, token_batch, waveform_samples_per_step)

    graph = artifact.metadata.main_graph
    if is_text_graph(graph):
        limit = text_length_limit(artifact, seq)
        if limit < seq:
            from ..errors import InputError

            raise InputError(f"{seq} tokens is past this model's {limit} text positions; pass --seq-lens {limit} or less")
        rows = batch * choices_of(graph)
        texts = [VALIDATION_SENTENCES[i % len(VALIDATION_SENTENCES)] for i in range(rows)]
        vocab = int(model_config(artifact.path).get("vocab_size") or 100)
        found = token_batch(graph, load_tokenizer(artifact.path), texts, vocab_size=vocab, pad_to=seq, max_length=seq,
                            image_size=recorded_image_size(artifact, "validated"))
    else:
        found = random_batch(graph, batch, sequence=seq, image_size=recorded_image_size(artifact, "validated"),
                             samples_per_step=waveform_samples_per_step(artifact))
    return found.feed, found.mask


PROMPT_VARIANTS = 4
"""Prompts timed in turn per shape (see the module docstring)."""


def prompt_inputs(artifact: Any, batch: int, seq: int, variant: int = 0) -> dict[str, np.ndarray]:
    """Random prompt ids inside the vocabulary (generation speed does not depend on the words).

    ``variant`` k shifts every id by k inside the vocabulary: variants of one shape differ from each
    other at every position, so a decode loop cannot reuse one variant's cache for the next."""
    from ..image_placeholders import EXTRA_KEY, ImageTokens
    from ..steps.samples import model_config

    config = model_config(artifact.path)
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    vocab = int(text.get("vocab_size") or config.get("vocab_size") or 100)
    low = min(5, vocab - 1)
    ids = np.random.default_rng(0).integers(low, vocab, size=(batch, seq), dtype=np.int64)
    ids = low + (ids - low + variant) % (vocab - low)
    extra = getattr(getattr(artifact, "metadata", None), "extra", None) or {}
    if EXTRA_KEY not in extra:
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    # A decoder LM that takes images: each prompt is one image's placeholders, then the seq text tokens
    tokens = ImageTokens.from_extra(extra, str(artifact.path))
    side = (tokens.channels, tokens.image_size, tokens.image_size)
    image: dict[str, np.ndarray] = {}
    rows = tokens.per_image
    if tokens.packing == "anyres":  # a square image of the tile size: its tiles, and the rows they pack into
        from transformers import AutoConfig

        from ..image_packing import pack_rows, tiles_per_image

        hf_config = AutoConfig.from_pretrained(artifact.path, trust_remote_code=False)  # type: ignore[no-untyped-call]
        sizes = np.array([[tokens.image_size, tokens.image_size]] * batch, np.int64)
        tiles = tiles_per_image(hf_config, sizes[:1])
        rows = pack_rows(hf_config, np.zeros(_bounded((tiles[0], tokens.per_image, tokens.width), artifact), np.float32),
                         np.zeros(tokens.width, np.float32), sizes[:1], tiles)[1][0]
        image = {"pixel_values": np.random.default_rng(variant).standard_normal(_bounded((batch, tiles[0], *side), artifact)).astype(np.float32),
                 "image_sizes": sizes}
    else:
        image = {"pixel_values": np.random.default_rng(variant).standard_normal(_bounded((batch, *side), artifact)).astype(np.float32)}
    ids[ids == tokens.token_id] = low
    ids = np.concatenate([np.full((batch, rows), tokens.token_id, np.int64), ids], axis=1)
    if tokens.attention == "image-blocks":  # gemma3: what its processor gives, so PyTorch sees the same blocks
        image["token_type_ids"] = (ids == tokens.token_id).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), **image}


def _bounded(shape: tuple[int, ...], artifact: Any) -> tuple[int, ...]:
    """``shape`` for a draw whose sizes come from the (untrusted) artifact folder, refused above MAX_SAMPLE_VALUES values."""
    from ..diffusion.record import MAX_SAMPLE_VALUES

    if int(np.prod(shape, dtype=np.float64)) > MAX_SAMPLE_VALUES:
        raise ArtifactError(f"{artifact.path}: its image record and config make a bench sample of shape {shape}, over "
                            f"{MAX_SAMPLE_VALUES} values; re-export the model")
    return shape


def in_turn(feeds: Sequence[dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """A function returning the next of ``feeds`` at each call, round and round."""
    turn = itertools.cycle(feeds)
    return lambda: next(turn)


def speech_frames(artifact: Any) -> tuple[int, int]:
    """(mel bins, frames) the speech encoder takes: fixed by the export, whatever --seq-lens says."""
    shape = artifact.metadata.graphs["encoder"].inputs[0].shape
    return int(shape[1]), int(shape[2])


def speech_inputs(artifact: Any, batch: int) -> dict[str, np.ndarray]:
    """Seeded random log-mel features of the encoder's input size."""
    bins, frames = speech_frames(artifact)
    return {"input_features": np.random.default_rng(0).standard_normal((batch, bins, frames), dtype=np.float32)}


def _tensors(output: Any) -> dict[str, np.ndarray]:
    import torch

    items = output.items() if hasattr(output, "items") else enumerate(output)
    return {str(k): v.detach().float().numpy() for k, v in items if isinstance(v, torch.Tensor)}


class Candidate:
    """A model (PyTorch or optibridge) with the calls the measurement needs, all on torch tensors."""

    def __init__(self, model: Any, generative: bool, new_tokens: int, pad_token_id: int,
                 decoder_start_token_id: int | None = None) -> None:
        self.model = model
        self.generative = generative
        self.decoder_start_token_id = decoder_start_token_id
        """Seq2seq models: the forward pass (prefill, accuracy) is the encoder plus the first decoder step."""
        self.generate_kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
                                "pad_token_id": pad_token_id}

    def forward(self, inputs: dict[str, Any]) -> Any:
        import torch

        with torch.inference_mode():
            if self.decoder_start_token_id is not None:
                rows = next(iter(inputs.values())).shape[0]
                start = torch.full((rows, 1), self.decoder_start_token_id, dtype=torch.long)
                return self.model(**inputs, decoder_input_ids=start, use_cache=True)
            if self.generative:
                return self.model(**inputs, use_cache=True)
            return self.model(**inputs)

    def generate(self, inputs: dict[str, Any]) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.generate(**inputs, **self.generate_kwargs)


def decoder_start_id(model: Any) -> int:
    """The token a seq2seq decoder starts from (generation config first, as generate() reads it)."""
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "decoder_start_token_id", None)
        if isinstance(value, int):
            return value
    return 0


def load_pytorch(reference: str, task: str) -> Any:
    """The PyTorch model as users run it: the task's Auto class with its default attention."""
    import transformers

    from ..tasks import get_task

    return getattr(transformers, get_task(task).auto_class).from_pretrained(reference, trust_remote_code=False).eval()


def load_candidate(spec: dict[str, Any]) -> Any:
    if spec["backend"] == BASELINE:
        return load_pytorch(spec["reference"], spec["task"])
    from ..modeling.tasks import task_class

    cls = task_class(spec["task"])
    return cls.from_pretrained(spec["artifact"], backend=spec["backend"], device=spec["device"], **spec["options"])


def _timed(calls: dict[str, Callable[[], object]], spec: dict[str, Any]) -> dict[str, TimingStats]:
    return measure_interleaved(calls, warmup=spec["warmup"], runs=spec["runs"], max_seconds=spec.get("duration_s"),
                               settle=1 if len(calls) > 1 else 0)


def _generation(prefill: TimingStats, generate: TimingStats, batch: int, new_tokens: int) -> Generation:
    decode = (generate.median - prefill.median) / (new_tokens - 1) if new_tokens > 1 else 0.0
    return Generation(new_tokens, prefill.median, max(decode, 0.0), batch * new_tokens / (generate.median / 1000.0))


def measure_shape(candidate: Candidate, reference: Candidate | None, inputs: dict[str, Any], mask: np.ndarray | None,
                  batch: int, spec: dict[str, Any], prompts: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Accuracy and interleaved timings at one shape; the fields of a :class:`~.schema.Cell`.

    ``prompts``: what timed ``generate`` calls take in turn (default: ``inputs`` every time); each
    model goes through them in the same order."""
    from ..accuracy import compare

    result: dict[str, Any] = {}
    prompts = list(prompts) or [inputs]
    next_prompt = in_turn(prompts)
    calls = {"candidate": (lambda: candidate.generate(next_prompt())) if candidate.generative else (lambda: candidate.forward(inputs))}
    if reference is not None:
        expected = _tensors(reference.forward(inputs))
        got = _tensors(candidate.forward(inputs))
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
        report = compare({k: v for k, v in expected.items() if k in got}, got, mask=mask, input_shapes=shapes,
                         inputs=f"the benchmark batch ({batch} rows), same for PyTorch and the candidate")
        result["accuracy"] = report.to_dict()
        reference_prompt = in_turn(prompts)
        calls["pytorch"] = (lambda: reference.generate(reference_prompt())) if reference.generative else (lambda: reference.forward(inputs))
    stats = _timed(calls, spec)
    result["latency"] = Latency.from_stats(stats["candidate"]).__dict__
    result["throughput_samples_s"] = batch / (stats["candidate"].median / 1000.0)
    if reference is not None:
        result["baseline"] = Latency.from_stats(stats["pytorch"]).__dict__
        result["speedup"] = stats["candidate"].ratio_to(stats["pytorch"])
    else:
        result["speedup"] = 1.0
    if candidate.generative:
        new_tokens = spec["new_tokens"]
        prefill_calls = {"candidate": lambda: candidate.forward(inputs)}
        if reference is not None:
            prefill_calls["pytorch"] = lambda: reference.forward(inputs)
        prefill = _timed(prefill_calls, spec)
        result["generation"] = _generation(prefill["candidate"], stats["candidate"], batch, new_tokens).__dict__
        if reference is not None:
            result["baseline_generation"] = _generation(prefill["pytorch"], stats["pytorch"], batch, new_tokens).__dict__
    return result


def run(spec: dict[str, Any], out: Path) -> None:
    import torch

    from ..artifact import Artifact

    torch.set_num_threads(int(spec["threads"]))
    generative = spec["task"] in GENERATIVE_TASKS
    shapes_artifact = Artifact.load(spec["inputs_artifact"])
    started = time.perf_counter()
    try:
        model = load_candidate(spec)
    except Exception as exc:
        _emit(out, {"event": "fatal", "reason": f"load failed: {_one_line(exc)}"})
        raise SystemExit(1) from exc
    load_s = time.perf_counter() - started
    _emit(out, {"event": "loaded", "load_s": load_s})  # from here on the runner's per-shape timeout applies
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    eos = getattr(getattr(model, "config", None), "eos_token_id", None)
    pad_id = pad if isinstance(pad, int) else (eos if isinstance(eos, int) else 0)
    start_id = decoder_start_id(model) if spec["task"] in ENCODER_DECODER_TASKS else None
    candidate = Candidate(model, generative, int(spec["new_tokens"]), pad_id, start_id)

    def as_torch(feed: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}

    feeds: list[tuple[dict[str, Any], np.ndarray | None, list[dict[str, Any]]] | Exception] = []
    for batch, seq in spec["shapes"]:
        try:
            prompts: list[dict[str, Any]] = []
            if spec["task"] in SPEECH_TASKS:
                inputs, mask = as_torch(speech_inputs(shapes_artifact, batch)), None
            elif generative:
                prompts = [as_torch(prompt_inputs(shapes_artifact, batch, seq, k)) for k in range(PROMPT_VARIANTS)]
                inputs, mask = prompts[0], None
            else:
                feed, mask = encoder_inputs(shapes_artifact, batch, seq)
                inputs = as_torch(feed)
            candidate.generate(inputs) if generative else candidate.forward(inputs)  # the first call, before memory is read
            feeds.append((inputs, mask, prompts))
        except Exception as exc:
            feeds.append(exc)
    peak = peak_rss_mb()
    # What the candidate really computes in (a recorded bf16, or f32), beside the options it was given.
    settings = {"threads": spec["threads"], **spec["options"]}
    if spec["backend"] != BASELINE:
        settings["inference_precision"] = str(getattr(model, "inference_precision", "f32"))
    reference = None
    if spec["backend"] != BASELINE:
        try:
            reference = Candidate(load_pytorch(spec["reference"], spec["task"]), generative, int(spec["new_tokens"]), pad_id, start_id)
        except Exception as exc:
            _emit(out, {"event": "fatal", "reason": f"could not load the PyTorch reference {spec['reference']}: {_one_line(exc)}"})
            raise SystemExit(1) from exc
    for (batch, seq), prepared in zip(spec["shapes"], feeds):
        base = {"batch_size": batch, "seq_len": seq, "load_s": load_s, "peak_rss_mb": peak, "settings": settings}
        if isinstance(prepared, Exception):
            _emit(out, {"event": "cell", **base, "status": "failed", "reason": _one_line(prepared)})
            continue
        try:
            measured = measure_shape(candidate, reference, prepared[0], prepared[1], batch, spec, prompts=prepared[2])
        except Exception as exc:
            _emit(out, {"event": "cell", **base, "status": "failed", "reason": _one_line(exc)})
            continue
        _emit(out, {"event": "cell", **base, "status": "ok", **measured})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    out = Path(args[1])
    try:
        run(spec, out)
    except SystemExit as exc:
        return int(exc.code or 0)
    except BaseException as exc:  # anything unexpected: say it in the results, then fail
        _emit(out, {"event": "fatal", "reason": _one_line(exc)})
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
