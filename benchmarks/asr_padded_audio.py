"""Speech recognition on a padded batch of waveforms: MoonshineForConditionalGeneration (PyTorch eager) vs
OBModelForSpeechSeq2Seq on ONNX Runtime and OpenVINO, interleaved, medians, greedy, the same audio; with each
candidate's tokens compared to PyTorch's.

    HF_HUB_OFFLINE=1 python benchmarks/asr_padded_audio.py [MOONSHINE_FOLDER] [--artifact moonshine-onnx] [--new-tokens 32]

Without MOONSHINE_FOLDER a random Moonshine of moonshine-tiny's sizes is built (MoonshineConfig's defaults:
288 wide, 6 encoder and 6 decoder layers, 32768 tokens), weights drawn N(0, 1/fan_in) so greedy tokens are
not ties. The batch: ``--batch`` waveforms of 5 to 10 s at 16 kHz, zero-padded to the longest with their mask,
as Moonshine's feature extractor gives them. Timed: one whole ``generate()`` (the encoder once, then
``--new-tokens`` decoder steps) per call. ``--prompt-tokens`` is unused here (the decoder starts from its
start token).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "coverage"))
from tiny_configs import redraw_weights  # noqa: E402
from generate_vs_pytorch import compare_and_time, generation_arguments  # noqa: E402

from optibridge import OBModelForSpeechSeq2Seq, export  # noqa: E402
from optibridge.artifact import is_artifact  # noqa: E402

SAMPLE_RATE = 16000


def random_moonshine(dest: Path) -> Path:
    torch.manual_seed(0)
    model = transformers.MoonshineForConditionalGeneration(transformers.MoonshineConfig()).eval()
    redraw_weights(model)
    model.save_pretrained(dest)
    return dest


def padded_waveforms(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` waveforms of 5-10 s, zero-padded to the longest, and their mask."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(5 * SAMPLE_RATE, 10 * SAMPLE_RATE, batch).astype(int)
    values = torch.zeros(batch, int(lengths.max()))
    mask = torch.zeros(batch, int(lengths.max()), dtype=torch.long)
    for row, length in enumerate(lengths):
        values[row, :length] = torch.from_numpy(rng.normal(0, 0.1, length).astype(np.float32))
        mask[row, :length] = 1
    return values, mask


def main() -> None:
    import argparse

    batch = argparse.ArgumentParser(add_help=False)
    batch.add_argument("--batch", type=int, default=4)
    known, rest = batch.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    args = generation_arguments(__doc__.splitlines()[0] + " (also: --batch N, default 4)", "MoonshineForConditionalGeneration", prompt_tokens=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else random_moonshine(Path(tmp) / "moonshine")
        artifact = Path(args.artifact) if args.artifact else Path(tmp) / "moonshine-onnx"
        if not is_artifact(artifact):
            export(folder, artifact, task="automatic-speech-recognition", exporter="dynamo")
        reference = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(folder).eval()
        models = {
            "ort": OBModelForSpeechSeq2Seq.from_pretrained(artifact, backend="ort", intra_op_num_threads=args.threads),
            "openvino": OBModelForSpeechSeq2Seq.from_pretrained(artifact, backend="openvino", inference_num_threads=args.threads),
        }
        values, mask = padded_waveforms(known.batch)
        kwargs = dict(input_values=values, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                      do_sample=False)
        compare_and_time(lambda: reference.generate(**kwargs), models, kwargs, 1, args.runs,
                         f"Moonshine ({'random, moonshine-tiny sizes' if not args.folder else folder}), batch {known.batch} of 5-10 s, "
                         f"{args.new_tokens} new tokens, {args.threads} threads, {args.runs} interleaved runs, medians:")


if __name__ == "__main__":
    main()
