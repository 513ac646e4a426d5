"""`optibridge run`: batch inference over a file, in this process or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..console import console, err_console
from ..image_placeholders import DEFAULT_IMAGE_PROMPT

LOCAL = "local"


def run(
    artifact: Path = typer.Argument(..., help="An artifact folder (optibridge export) of a text task."),
    input_path: Path = typer.Option(..., "--input", "-i", help="Rows to run: .jsonl (one JSON object per line), .parquet, or .txt (one row per line)."),
    output: Path = typer.Option(..., "--output", "-o", help="The .parquet file to write (atomically)."),
    column: str = typer.Option("text", "--column", help="The input column that holds the text (image and audio tasks: the file path)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Rows per model call."),
    on_error: str = typer.Option("fail", "--on-error", help="fail: stop at the first row the tokenizer or model rejects, naming it; skip: record its error in the 'error' column and go on."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="text-generation / text2text-generation: tokens to generate per row (greedy)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Truncate inputs to this many tokens (default: the tokenizer's limit)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="zero-shot-image-classification: the candidate labels, comma-separated ('cat,dog,a red car')."),
    template: str = typer.Option("This is a photo of {}.", "--template", help="zero-shot-image-classification: the sentence each label goes into ({} marks where)."),
    threshold: float = typer.Option(0.5, "--threshold", help="object-detection: keep objects scored at least this (0-1)."),
    prompt: str = typer.Option(DEFAULT_IMAGE_PROMPT, "--prompt", help="image-text-to-text: what every image is asked (the image goes first unless the prompt places its token)."),
    backend: str = typer.Option("auto", "--backend", help="Backend that runs the artifact (see `optibridge backends`; auto: the first usable one by priority)."),
    device: str = typer.Option("cpu", "--device", help="Device of that backend."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Rows per finished shard: a re-run resumes after the last whole shard."),
    id_column: str = typer.Option("id", "--id-column", help="Name of the row-id column added to the output."),
    ray: Optional[str] = typer.Option(
        None, "--ray",
        help="Run on Ray Data with an actor pool: --ray alone starts a local cluster; --ray ADDRESS joins one (as ray.init takes it, e.g. auto or ray://head:10001)."),
    replicas: int = typer.Option(1, "--replicas", help="With --ray: actors in the pool (each loads the artifact once)."),
    cpus_per_replica: float = typer.Option(1.0, "--cpus-per-replica", help="With --ray: CPUs Ray reserves for each actor."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Run an artifact's task over every row of a file and write the results to parquet.

    Examples:

        optibridge run ./minilm-onnx --input docs.jsonl --output embeddings.parquet

        optibridge run ./sentiment-onnx --input reviews.parquet --column body --output labels.parquet --on-error skip

        optibridge run ./minilm-onnx --input docs.jsonl --output embeddings.parquet --ray --replicas 2

        optibridge run ./minilm-onnx --input docs.jsonl --output embeddings.parquet --ray auto --replicas 16

        optibridge run ./vit-onnx --input photos.txt --output labels.parquet

        optibridge run ./clip-onnx --input photos.txt --output labels.parquet --labels "a cat,a dog,a car"

        optibridge run ./detr-onnx --input photos.txt --output objects.parquet --threshold 0.7

        optibridge run ./llava-onnx --input photos.txt --output answers.parquet --prompt "What is in the picture?"

    Results by task: feature-extraction -> embedding (mean of the last hidden states over the real
    tokens); sentence-similarity -> embedding (what SentenceTransformer.encode returns);
    text-classification -> label, score; token-classification -> entities;
    text-generation / text2text-generation -> generated_text; image-to-text -> generated_text (a
    caption); image-text-to-text (llava) -> generated_text (the answer to --prompt about the image); zero-shot-image-classification -> label, score (the best of --labels); object-detection ->
    objects (label, score, box in pixels; scored at least --threshold); semantic-segmentation -> segments
    (each class in the label map and the fraction of pixels it covers); image-classification and
    audio-classification -> label, score, and ctc / automatic-speech-recognition (Whisper) ->
    transcription, where each row is the path of
    an image or recording (.wav, .flac, .mp3, .ogg; relative to the input file's folder). The output has an id column (the
    row's position in the input, 0-based; rows are in input order), the input's columns, the
    results, and error. Finished shards wait in OUTPUT.parts/; running the same command again
    after an interruption resumes from them.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..batch.run import RayOptions, describe, run_file

    ray_options = None
    if ray is not None:
        ray_options = RayOptions(address=None if ray == LOCAL else ray, replicas=replicas, cpus_per_replica=cpus_per_replica)
    bar = Progress(TextColumn("[bold]rows"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[speed]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=not progress, transient=True)
    with bar:
        task = bar.add_task("rows", total=None, speed="")

        def advance(done: int, total: int) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, speed=f"{speed:.1f} rows/s" if speed else "")

        result = run_file(
            artifact, input_path, output, column=column, batch_size=batch_size, on_error=on_error,
            max_new_tokens=max_new_tokens, max_length=max_length, labels=(labels or "").split(","), template=template, threshold=threshold, prompt=prompt,
            backend=backend, device=device, shard_size=shard_size,
            id_column=id_column, ray=ray_options, on_progress=advance,
        )
    for line in describe(result):
        console.print(line, highlight=False)
