"""Generation on OpenVINO, optibridge beside optimum-intel (``make bench-peers``' venv): memory and tokens/s.

A random GPT-2-small (n_embd 768, 12 layers, seeded; weights redrawn N(0, 1/fan_in) so the logits
are O(1): with the default 0.02 init the top logits are near ties and any rounding flips greedy
tokens, so "same tokens as PyTorch" would say nothing) is exported by optibridge's CLI (``export``,
then ``optimize --backend openvino --inference-precision bf16``; ``quantize --backend openvino
--mode f16-weights`` (float16 weights, float32 arithmetic), ``--mode int8-weights`` and ``--mode
int4-weights --block-size 128``; the exported ONNX itself on ONNX Runtime, in transformers' loop and
in onnxruntime-genai, and ``quantize --mode int4 --block-size 128`` for ONNX Runtime's int4 there)
and by Optimum (``ORTModelForCausalLM.from_pretrained(export=True)``, both ORT sessions without
spin-waiting, optibridge's default) and optimum-intel (``OVModelForCausalLM.from_pretrained(export=True)``,
with ``load_in_8bit=True``, ``OVWeightQuantizationConfig(bits=8, sym=True)`` (beside ``--mode
int8-weights --symmetric``) and ``OVWeightQuantizationConfig(bits=4, group_size=128)``, saved;
float16 weights through its exporter with ``OVConfig(dtype="fp16")``, what ``optimum-cli export
openvino --weight-format fp16`` does): the weight-only pairs compress the same weights with NNCF in
groups of the same size (optimum-intel's int4 default is asymmetric, optibridge's symmetric).
Tokens/s: every variant generates 64 tokens after 32-token prompts, interleaved, four prompts taken
in turn (every token different from the call before's: openvino-genai skips the prefill of the
prompt it has just seen; ``--same-prompt`` repeats one, to show what that is worth); "same tokens"
counts the prompts whose 64 greedy tokens equal PyTorch's. Each variant is then loaded in a fresh process and generates 4 tokens; the figure is the peak
RSS (VmHWM) added by that, over a baseline taken after importing torch, transformers, openvino,
onnxruntime, optimum.intel, optimum.onnxruntime and optibridge — the same imports for every variant, so only the model counts.
Both compute in bf16 on a CPU with bf16 (optimum-intel's default there; optibridge's recorded step precision),
in f32 elsewhere; the float16-weight rows compute in f32 (optibridge's) or the runtime default (optimum-intel's).

"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

PROBE = """
import json, sys, torch, transformers, openvino, onnxruntime, optibridge, optimum.intel, optimum.onnxruntime
def peak():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
kind, path, threads, engine, here = sys.argv[1:6]
sys.path.insert(0, here)
from peers_generation import load_variant
before = peak()
model = load_variant(kind, path, int(threads), engine)
model.generate(input_ids=torch.arange(100, 132)[None], max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
print(json.dumps({"mb": peak() - before, "precision": str(getattr(model, "inference_precision", "runtime default")),
                  "engine": str(getattr(model, "last_generation_engine", "transformers"))}))
"""


def load_variant(kind: str, path: str | Path, threads: int, engine: str) -> Any:
    """One variant, loaded the same way for the memory probe and for the timing."""
    if kind == "optimum":
        from optimum.intel import OVModelForCausalLM

        return OVModelForCausalLM.from_pretrained(path, ov_config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)})
    if kind == "optimum-ort":
        import onnxruntime
        from optimum.onnxruntime import ORTModelForCausalLM

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # optibridge's default, for both
        return ORTModelForCausalLM.from_pretrained(path, session_options=options)
    from optibridge import OBModelForCausalLM

    if kind == "optibridge-ort":
        return OBModelForCausalLM.from_pretrained(path, intra_op_num_threads=threads, generation_engine=engine)
    return OBModelForCausalLM.from_pretrained(path, backend="openvino", performance_hint="LATENCY",
                                              inference_num_threads=threads, generation_engine=engine)


OPTIBRIDGE_CLI = [str(Path(sys.executable).parent / "optibridge")]


def cli(*args: str) -> None:
    done = subprocess.run([*OPTIBRIDGE_CLI, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"optibridge {args[0]} failed:\n{done.stderr[-2000:]}")


def build(root: Path) -> dict[str, tuple[str, Path, str]]:
    import torch
    from optimum.exporters.openvino import main_export
    from optimum.intel import OVConfig, OVModelForCausalLM, OVWeightQuantizationConfig
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import GPT2Config, GPT2LMHeadModel

    from optibridge.hardware import float_precisions

    source = root / "gpt2"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)).eval()
    redraw(model)
    model.save_pretrained(source)
    # bf16 where the CPU computes it (optimum-intel's default there), f32 elsewhere (its default there too)
    precision = "bf16" if "bf16" in float_precisions() else "f32"
    print(f"exporting with {OPTIBRIDGE_CLI[0]} and optimum-intel; optibridge in {precision}", file=sys.stderr, flush=True)
    cli("export", "--model", str(source), "--task", "text-generation", str(root / "onnx"))
    cli("optimize", str(root / "onnx"), "--backend", "openvino", "--inference-precision", precision, str(root / "ob"))
    cli("quantize", str(root / "onnx"), "--backend", "openvino", "--mode", "f16-weights", "--inference-precision", "f32",
        str(root / "ob-f16-weights"))
    for mode, extra in (("int8-weights", ()), ("int4-weights", ("--block-size", "128"))):
        cli("quantize", str(root / "onnx"), "--backend", "openvino", "--mode", mode, *extra, "--inference-precision", precision,
            str(root / f"ob-{mode}"))
    cli("quantize", str(root / "onnx"), "--backend", "openvino", "--mode", "int8-weights", "--symmetric", "--inference-precision",
        precision, str(root / "ob-int8-weights-sym"))
    # ONNX Runtime's int4 (MatMulNBits, int8 products): the other int4 optibridge offers, beside optimum-intel's
    cli("quantize", str(root / "onnx"), "--mode", "int4", "--block-size", "128", str(root / "ob-ort-int4"))
    OVModelForCausalLM.from_pretrained(source, export=True).save_pretrained(root / "optimum")
    main_export(str(source), root / "optimum-f16-weights", task="text-generation-with-past", ov_config=OVConfig(dtype="fp16"))
    ORTModelForCausalLM.from_pretrained(source, export=True).save_pretrained(root / "optimum-ort")
    OVModelForCausalLM.from_pretrained(source, export=True, load_in_8bit=True).save_pretrained(root / "optimum-int8-weights")
    OVModelForCausalLM.from_pretrained(source, export=True, quantization_config=OVWeightQuantizationConfig(bits=8, sym=True)
                                       ).save_pretrained(root / "optimum-int8-weights-sym")
    OVModelForCausalLM.from_pretrained(source, export=True, quantization_config=OVWeightQuantizationConfig(bits=4, group_size=128)
                                       ).save_pretrained(root / "optimum-int4-weights")
    return {"Optimum ORTModelForCausalLM (f32)": ("optimum-ort", root / "optimum-ort", ""),
            "optibridge ORT f32, transformers loop": ("optibridge-ort", root / "onnx", "transformers"),
            "optibridge ORT f32, onnxruntime-genai": ("optibridge-ort", root / "onnx", "auto"),
            "optimum-intel OVModelForCausalLM (its default precision)": ("optimum", root / "optimum", ""),
            f"optibridge {precision}, transformers loop": ("optibridge", root / "ob", "transformers"),
            f"optibridge {precision}, openvino-genai loop": ("optibridge", root / "ob", "auto"),
            "optimum-intel f16 weights (OVConfig(dtype='fp16'))": ("optimum", root / "optimum-f16-weights", ""),
            "optibridge f16 weights (f32 arithmetic), transformers loop": ("optibridge", root / "ob-f16-weights", "transformers"),
            "optibridge f16 weights (f32 arithmetic), openvino-genai": ("optibridge", root / "ob-f16-weights", "auto"),
            "optimum-intel int8 weights (load_in_8bit)": ("optimum", root / "optimum-int8-weights", ""),
            f"optibridge int8 weights ({precision} rest), transformers loop": ("optibridge", root / "ob-int8-weights", "transformers"),
            f"optibridge int8 weights ({precision} rest), openvino-genai": ("optibridge", root / "ob-int8-weights", "auto"),
            "optimum-intel int8 weights, symmetric (bits=8, sym=True)":
                ("optimum", root / "optimum-int8-weights-sym", ""),
            f"optibridge int8 weights, symmetric ({precision} rest), openvino-genai":
                ("optibridge", root / "ob-int8-weights-sym", "auto"),
            "optimum-intel int4 weights (group 128)": ("optimum", root / "optimum-int4-weights", ""),
            f"optibridge int4 weights ({precision} rest), openvino-genai": ("optibridge", root / "ob-int4-weights", "auto"),
            "optibridge ORT int4 (group 128), onnxruntime-genai": ("optibridge-ort", root / "ob-ort-int4", "auto")}


def redraw(model: Any) -> None:
    """Every weight matrix ~ N(0, 1/fan_in), in place (GPT-2's Conv1D stores (in, out); the
    embeddings (rows, width) are scaled by their width): hidden states and logits stay O(1)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2:
                fan_in = parameter.shape[1] if name.endswith(("wte.weight", "wpe.weight")) else parameter.shape[0]
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in ** 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per variant (the figure is their median)")
    parser.add_argument("--runs", type=int, default=5, help="timed generate() rounds per variant")
    parser.add_argument("--same-prompt", action="store_true",
                        help="time one prompt over and over (flatters openvino-genai, which then skips the prefill)")
    parser.add_argument("--optibridge-cli", help="the optibridge command that exports (default: this venv's, transformers < 4.58 "
                                                 "like Optimum's; `make bench-peers` passes the main venv's, transformers 5)")
    args = parser.parse_args()
    if args.optibridge_cli:
        OPTIBRIDGE_CLI[:] = [args.optibridge_cli]
    with tempfile.TemporaryDirectory() as tmp:
        variants = build(Path(tmp))
        for name, (kind, path, engine) in variants.items():
            runs = []
            for _ in range(args.repeats):
                done = subprocess.run([sys.executable, "-c", PROBE, kind, str(path), str(args.threads), engine, str(Path(__file__).parent)],
                                      capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            mb = sorted(r["mb"] for r in runs)[len(runs) // 2]
            print(f"{name:64s} {mb:7.0f} MB peak RSS rise  (precision: {runs[0]['precision']}, engine: {runs[0]['engine']}; "
                  f"runs {[round(r['mb']) for r in runs]})", flush=True)
        speed(variants, Path(tmp) / "gpt2", args)


def speed(variants: dict[str, tuple[str, Path, str]], source: Path, args: argparse.Namespace) -> None:
    import torch
    from transformers import GPT2LMHeadModel

    from optibridge.bench import measure_interleaved
    from optibridge.bench.measure import in_turn

    torch.set_num_threads(args.threads)
    models: dict[str, object] = {"PyTorch": GPT2LMHeadModel.from_pretrained(source).eval()}
    for name, (kind, path, engine) in variants.items():
        models[name] = load_variant(kind, path, args.threads, engine)
    prompt = torch.randint(100, 20000, (1, 32), generator=torch.Generator().manual_seed(1))
    # Each model takes these in turn, every token different from the call before's: openvino-genai skips the
    # prefill of the prompt it has just seen, which one prompt timed over and over would reward (--same-prompt).
    prompts = [prompt] if args.same_prompt else [prompt + k for k in range(4)]
    greedy = dict(max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)

    def call(model: object, ids: object) -> object:
        with torch.inference_mode():
            return model.generate(input_ids=ids, **greedy)  # type: ignore[attr-defined]

    def each_in_turn(model: object) -> Callable[[], object]:
        next_prompt = in_turn(prompts)
        return lambda: call(model, next_prompt())

    outputs = {name: [call(model, p) for p in prompts] for name, model in models.items()}
    stats = measure_interleaved({name: each_in_turn(model) for name, model in models.items()}, warmup=1, runs=args.runs, settle=1)
    base = stats["PyTorch"].median
    print(f"\ngreedy, 32-token prompt + 64 new tokens, batch 1, {args.threads} threads, {args.runs} interleaved runs, medians, "
          + ("one prompt repeated" if args.same_prompt else f"{len(prompts)} prompts in turn"))
    for name, stat in stats.items():
        same = sum(torch.equal(a, b) for a, b in zip(outputs[name], outputs["PyTorch"]))  # type: ignore[arg-type]
        print(f"{name:64s} {64_000 / stat.median:6.1f} tok/s  {base / stat.median:5.2f}x  "
              f"same tokens as PyTorch: {same}/{len(prompts)} prompts")


if __name__ == "__main__":
    main()
