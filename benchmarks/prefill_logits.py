"""Prefill on ONNX Runtime with and without the graph's ``logits_to_keep`` input.

A GPT-2-small-sized decoder (random weights: speed does not depend on the values) is exported once.
Two models load the same graph: one feeds ``logits_to_keep`` (what ``generate()`` asks for: the
last position's logits), the other leaves it at its default (every position goes through the
768 × 50257 LM head and the caller keeps the last row, as before the input existed). Timed
interleaved in one process (medians, see optibridge.bench.timing): a forward over the prompt, and
``generate()`` in transformers' loop (the engine for sampling, beams, processors, padded batches).
Logits and tokens are checked equal first.

    HF_HUB_OFFLINE=1 python benchmarks/prefill_logits.py [--prompts 32,256] [--runs 15] [--quantize dynamic]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from rich.console import Console
from rich.table import Table
from transformers import GPT2Config, GPT2LMHeadModel

import optibridge
from optibridge.bench import measure_interleaved

console = Console(width=None if sys.stdout.isatty() else 120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", default="32,256", help="comma-separated prompt lengths (default 32,256)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generate() adds after each prompt (default 64)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per candidate (default 15)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quantize", choices=("dynamic", "int4"), help="time the graph quantized this way (ORT) instead of float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        config = GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)
        GPT2LMHeadModel(config).eval().save_pretrained(Path(tmp) / "gpt2-small")
        artifact = optibridge.export(Path(tmp) / "gpt2-small", Path(tmp) / "onnx").artifact
        if args.quantize:
            artifact = optibridge.quantize(artifact.path, optibridge.QuantizationConfig(mode=args.quantize), Path(tmp) / "q").artifact
        optional = [t.name for t in artifact.metadata.main_graph.optional_inputs]
        if optional != ["logits_to_keep"]:
            raise SystemExit(f"the exported graph has no logits_to_keep input (optional inputs: {optional})")
        options = {"intra_op_num_threads": args.threads, "generation_engine": "transformers"}
        sliced = optibridge.OBModelForCausalLM.from_pretrained(artifact.path, **options)
        every = optibridge.OBModelForCausalLM.from_pretrained(artifact.path, **options)
        every.session._inner._optional_input_names = []  # the default: every position through the LM head
        for model in (sliced, every):
            model.generation_config.pad_token_id = config.eos_token_id
        console.print(f"{artifact.metadata.steps[-1]['mode'] if args.quantize else 'float32'} graph, "
                      f"{args.threads} threads, {args.runs} interleaved runs, medians")

        table = Table(title="GPT-2-small on ONNX Runtime: LM head over the last position vs every position")
        for column in ("prompt", "forward, every / last (ms)", "speed-up",
                       f"generate {args.new_tokens}, every / last (ms)", "speed-up", "same"):
            table.add_column(column, justify="right")
        for length in [int(p) for p in args.prompts.split(",")]:
            ids = torch.randint(100, 50000, (1, length), generator=torch.Generator().manual_seed(length))
            settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                            attention_mask=torch.ones_like(ids))
            with torch.inference_mode():
                last = sliced(input_ids=ids, logits_to_keep=1).logits
                same = bool(torch.equal(last, every(input_ids=ids, logits_to_keep=1).logits)) and bool(
                    torch.equal(sliced.generate(ids, **settings), every.generate(ids, **settings)))

            def forward(model: optibridge.OBModelForCausalLM) -> object:
                with torch.inference_mode():
                    return model(input_ids=ids, logits_to_keep=1)

            def generate(model: optibridge.OBModelForCausalLM) -> object:
                with torch.inference_mode():
                    return model.generate(ids, **settings)

            step = measure_interleaved({"every": lambda: forward(every), "last": lambda: forward(sliced)},
                                       warmup=2, runs=args.runs, settle=0)
            loop = measure_interleaved({"every": lambda: generate(every), "last": lambda: generate(sliced)},
                                       warmup=1, runs=max(3, args.runs // 3), settle=0)
            table.add_row(str(length), f"{step['every'].median:.1f} / {step['last'].median:.1f}",
                          f"{step['every'].median / step['last'].median:.2f}x",
                          f"{loop['every'].median:.0f} / {loop['last'].median:.0f}",
                          f"{loop['every'].median / loop['last'].median:.2f}x", "yes" if same else "NO")
        console.print(table)
        console.print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
