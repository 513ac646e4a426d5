"""Generation on OpenVINO, optibridge beside optimum-intel (``make bench-peers``' venv): memory and tokens/s.

A random GPT-2-small (n_embd 768, 12 layers, seeded; weights redrawn N(0, 1/fan_in) so the logits
are O(1): with the default 0.02 init the top logits are near ties and any rounding flips greedy
tokens, so "same tokens as PyTorch" would say nothing) is exported by optibridge's CLI (``export``,
then ``optimize --backend openvino --inference-precision bf16``; ``quantize --backend openvino
--mode f16-weights`` (float16 weights, float32 arithmetic), ``--mode int8-weights`` and ``--mode
int4-weights --block-size 128``; the exported ONNX itself on ONNX Runtime, in transformers' loop and
in onnxruntime-genai, ``quantize --mode int4 --block-size 128`` for ONNX Runtime's int4 there and
``quantize --mode dynamic`` for its int8 dynamic)
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
in f32 elsewhere; the float16-weight rows compute in f32 (optibridge's), and optimum-intel's twice: in the runtime
default and with ``INFERENCE_PRECISION_HINT f32`` (the like-for-like row: same weights, same arithmetic).

A focused run: ``--only ORT --blocks 3 --skip-memory`` builds and times only the variants whose
label says ORT (beside PyTorch), in three interleaved blocks printed one by one: a difference that
changes sign between blocks is the machine's, not the tools'.
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
    if kind in ("optimum", "optimum-f32"):
        from optimum.intel import OVModelForCausalLM

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}
        if kind == "optimum-f32":  # the same arithmetic as optibridge's float16-weight artifact
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return OVModelForCausalLM.from_pretrained(str(path), ov_config=config)  # a Path trips its IR-or-export check (a warning)
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


def _optibridge_artifacts(precision: str) -> dict[str, Callable[[Path, Path], None]]:
    """optibridge's artifacts, each made by its own CLI from the exported ONNX (``root / "onnx"``)."""
    ov = ("--backend", "openvino")
    return {
        "ob": lambda root, source: cli("optimize", str(root / "onnx"), *ov, "--inference-precision", precision, str(root / "ob")),
        "ob-f16-weights": lambda root, source: cli("quantize", str(root / "onnx"), *ov, "--mode", "f16-weights",
                                                   "--inference-precision", "f32", str(root / "ob-f16-weights")),
        "ob-int8-weights": lambda root, source: cli("quantize", str(root / "onnx"), *ov, "--mode", "int8-weights",
                                                    "--inference-precision", precision, str(root / "ob-int8-weights")),
        "ob-int8-weights-sym": lambda root, source: cli("quantize", str(root / "onnx"), *ov, "--mode", "int8-weights", "--symmetric",
                                                        "--inference-precision", precision, str(root / "ob-int8-weights-sym")),
        "ob-int4-weights": lambda root, source: cli("quantize", str(root / "onnx"), *ov, "--mode", "int4-weights", "--block-size", "128",
                                                    "--inference-precision", precision, str(root / "ob-int4-weights")),
        # ONNX Runtime's int8 dynamic (what `tune` chose for this model at 8 new tokens after 32)
        "ob-ort-int8-dynamic": lambda root, source: cli("quantize", str(root / "onnx"), "--mode", "dynamic",
                                                        str(root / "ob-ort-int8-dynamic")),
        # ONNX Runtime's int4 (MatMulNBits, int8 products): the other int4 optibridge offers, beside optimum-intel's
        "ob-ort-int4": lambda root, source: cli("quantize", str(root / "onnx"), "--mode", "int4", "--block-size", "128",
                                                str(root / "ob-ort-int4")),
    }


def _optimum_artifacts() -> dict[str, Callable[[Path, Path], None]]:
    """Optimum's and optimum-intel's artifacts, exported and saved by their own APIs."""

    def intel(folder: str, **settings: Any) -> Callable[[Path, Path], None]:
        def make(root: Path, source: Path) -> None:
            from optimum.intel import OVModelForCausalLM

            OVModelForCausalLM.from_pretrained(source, export=True, **settings).save_pretrained(root / folder)
        return make

    def f16_weights(root: Path, source: Path) -> None:
        from optimum.exporters.openvino import main_export
        from optimum.intel import OVConfig

        main_export(str(source), root / "optimum-f16-weights", task="text-generation-with-past", ov_config=OVConfig(dtype="fp16"))

    def ort(root: Path, source: Path) -> None:
        from optimum.onnxruntime import ORTModelForCausalLM

        ORTModelForCausalLM.from_pretrained(source, export=True).save_pretrained(root / "optimum-ort")

    def weights(bits: int, **settings: Any) -> dict[str, Any]:
        from optimum.intel import OVWeightQuantizationConfig

        return {"quantization_config": OVWeightQuantizationConfig(bits=bits, **settings)}

    return {
        "optimum": intel("optimum"),
        "optimum-f16-weights": f16_weights,
        "optimum-ort": ort,
        "optimum-int8-weights": intel("optimum-int8-weights", load_in_8bit=True),
        "optimum-int8-weights-sym": lambda root, source: intel("optimum-int8-weights-sym", **weights(8, sym=True))(root, source),
        "optimum-int4-weights": lambda root, source: intel("optimum-int4-weights", **weights(4, group_size=128))(root, source),
    }


def variants(precision: str) -> dict[str, tuple[str, str, str]]:
    """label → (how it is loaded, artifact folder, generation engine)."""
    return {"Optimum ORTModelForCausalLM (f32)": ("optimum-ort", "optimum-ort", ""),
            "optibridge ORT f32, transformers loop": ("optibridge-ort", "onnx", "transformers"),
            "optibridge ORT f32, onnxruntime-genai": ("optibridge-ort", "onnx", "auto"),
            "optimum-intel OVModelForCausalLM (its default precision)": ("optimum", "optimum", ""),
            f"optibridge {precision}, transformers loop": ("optibridge", "ob", "transformers"),
            f"optibridge {precision}, openvino-genai loop": ("optibridge", "ob", "auto"),
            "optimum-intel f16 weights (OVConfig(dtype='fp16'))": ("optimum", "optimum-f16-weights", ""),
            "optimum-intel f16 weights, f32 arithmetic (INFERENCE_PRECISION_HINT f32)": ("optimum-f32", "optimum-f16-weights", ""),
            "optibridge f16 weights (f32 arithmetic), transformers loop": ("optibridge", "ob-f16-weights", "transformers"),
            "optibridge f16 weights (f32 arithmetic), openvino-genai": ("optibridge", "ob-f16-weights", "auto"),
            "optimum-intel int8 weights (load_in_8bit)": ("optimum", "optimum-int8-weights", ""),
            f"optibridge int8 weights ({precision} rest), transformers loop": ("optibridge", "ob-int8-weights", "transformers"),
            f"optibridge int8 weights ({precision} rest), openvino-genai": ("optibridge", "ob-int8-weights", "auto"),
            "optimum-intel int8 weights, symmetric (bits=8, sym=True)": ("optimum", "optimum-int8-weights-sym", ""),
            f"optibridge int8 weights, symmetric ({precision} rest), openvino-genai": ("optibridge", "ob-int8-weights-sym", "auto"),
            "optimum-intel int4 weights (group 128)": ("optimum", "optimum-int4-weights", ""),
            f"optibridge int4 weights ({precision} rest), openvino-genai": ("optibridge", "ob-int4-weights", "auto"),
            "optibridge ORT int8 dynamic, onnxruntime-genai": ("optibridge-ort", "ob-ort-int8-dynamic", "auto"),
            "optibridge ORT int4 (group 128), onnxruntime-genai": ("optibridge-ort", "ob-ort-int4", "auto")}


def selected(all_variants: dict[str, tuple[str, str, str]], only: list[str]) -> dict[str, tuple[str, str, str]]:
    """The variants whose label contains one of ``only`` (case-insensitive); all of them when ``only`` is empty."""
    if not only:
        return dict(all_variants)
    chosen = {label: v for label, v in all_variants.items() if any(word.lower() in label.lower() for word in only)}
    if not chosen:
        raise SystemExit(f"--only {' '.join(only)} matches no variant; the labels are:\n  " + "\n  ".join(all_variants))
    return chosen


def build(root: Path, only: list[str]) -> dict[str, tuple[str, Path, str]]:
    """Export the random GPT-2 and make the artifacts the chosen variants need (only those)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from optibridge.hardware import float_precisions

    # bf16 where the CPU computes it (optimum-intel's default there), f32 elsewhere (its default there too)
    precision = "bf16" if "bf16" in float_precisions() else "f32"
    chosen = selected(variants(precision), only)
    source = root / "gpt2"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)).eval()
    redraw(model)
    model.save_pretrained(source)
    print(f"exporting with {OPTIBRIDGE_CLI[0]} and the peers; optibridge in {precision}; {len(chosen)} variants", file=sys.stderr, flush=True)
    makers = {**_optibridge_artifacts(precision), **_optimum_artifacts()}
    folders = {folder for _, folder, _ in chosen.values()}
    if folders & ({"onnx"} | set(_optibridge_artifacts(precision))):
        cli("export", "--model", str(source), "--task", "text-generation", str(root / "onnx"))
    for folder in sorted(folders - {"onnx"}):
        makers[folder](root, source)
    return {label: (kind, root / folder, engine) for label, (kind, folder, engine) in chosen.items()}


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
    parser.add_argument("--only", nargs="+", default=[], metavar="WORD",
                        help="time only the variants whose label contains one of these words (case-insensitive), e.g. "
                             "--only ORT 'f16 weights'; builds only their artifacts. PyTorch is always timed")
    parser.add_argument("--blocks", type=int, default=1,
                        help="interleaved timing blocks of --runs rounds each, printed one by one (the spread between "
                             "blocks shows how much of a difference is the machine's)")
    parser.add_argument("--skip-memory", action="store_true", help="time only; no fresh process per variant for peak RSS")
    args = parser.parse_args()
    if args.optibridge_cli:
        OPTIBRIDGE_CLI[:] = [args.optibridge_cli]
    with tempfile.TemporaryDirectory() as tmp:
        variants = build(Path(tmp), args.only)
        for name, (kind, path, engine) in ({} if args.skip_memory else variants).items():
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
    for block in range(1, args.blocks + 1):
        stats = measure_interleaved({name: each_in_turn(model) for name, model in models.items()}, warmup=1, runs=args.runs, settle=1)
        base = stats["PyTorch"].median
        print(f"\ngreedy, 32-token prompt + 64 new tokens, batch 1, {args.threads} threads, {args.runs} interleaved runs, medians, "
              + ("one prompt repeated" if args.same_prompt else f"{len(prompts)} prompts in turn")
              + (f"; block {block} of {args.blocks}" if args.blocks > 1 else ""))
        for name, stat in stats.items():
            same = sum(torch.equal(a, b) for a, b in zip(outputs[name], outputs["PyTorch"]))  # type: ignore[arg-type]
            print(f"{name:64s} {64_000 / stat.median:6.1f} tok/s  {base / stat.median:5.2f}x  "
                  f"same tokens as PyTorch: {same}/{len(prompts)} prompts", flush=True)


if __name__ == "__main__":
    main()
