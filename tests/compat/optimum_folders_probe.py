"""Manual check (not in CI): optibridge loads folders that real Optimum wrote, matching PyTorch.

Needs a separate venv with Optimum (it pins transformers < 4.58), e.g.::

    python3 -m venv ../optimum-venv && ../optimum-venv/bin/pip install torch==2.13.0 \\
        optimum-onnx==0.1.0 "transformers>=4.57,<4.58" onnxruntime "huggingface_hub<1.0"
    HF_HUB_OFFLINE=1 .venv/bin/python tests/compat/optimum_folders_probe.py ../optimum-venv/bin/optimum-cli /tmp/probe

It builds tiny random bert / gpt2 / t5 folders with this venv, exports them with ``optimum-cli
export onnx`` and loads the results with optibridge's ORT and OpenVINO classes. Where that venv has
optimum-intel too (``make bench-peers``' ``.venv-peers`` does), bert and gpt2 are also exported with
``optimum-cli export openvino`` (gpt2 as the stateful IR optimum-intel writes) and loaded with the
OVModelFor… classes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent.parent))
from tiny_models import build_tiny_generative, build_tiny_model, build_tiny_seq2seq  # noqa: E402

from optibridge.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM, ORTModelForSequenceClassification  # noqa: E402
from optibridge.openvino import OVModelForCausalLM, OVModelForSeq2SeqLM, OVModelForSequenceClassification  # noqa: E402

GREEDY = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)


def optimum_export(cli: str, source: Path, task: str, dest: Path) -> Path:
    subprocess.run([cli, "export", "onnx", "--model", str(source), "--task", task, str(dest)], check=True, capture_output=True)
    return dest


def optimum_intel_export(cli: str, source: Path, task: str, dest: Path) -> Path | None:
    """``optimum-cli export openvino``; None when that venv has no optimum-intel."""
    done = subprocess.run([cli, "export", "openvino", "--model", str(source), "--task", task, str(dest)], capture_output=True, text=True)
    if done.returncode != 0 and "invalid choice" in done.stderr:
        print("optimum-intel is not installed beside optimum-cli: its IR folders were not checked")
        return None
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return dest


def main(cli: str, root: Path) -> None:
    bert = build_tiny_model("bert", "text-classification", root / "bert-src")
    gpt2 = build_tiny_generative("gpt2", root / "gpt2-src")
    t5 = build_tiny_seq2seq("t5", root / "t5-src")

    ids = torch.randint(5, 100, (2, 7))
    want = AutoModelForSequenceClassification.from_pretrained(bert).eval()(input_ids=ids).logits
    got = ORTModelForSequenceClassification.from_pretrained(optimum_export(cli, bert, "text-classification", root / "bert"))(input_ids=ids).logits
    diff = (got - want).abs().max().item()
    print(f"bert text-classification: max abs diff {diff:.1e}")
    assert diff < 1e-4

    tok = AutoTokenizer.from_pretrained(gpt2)
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    inputs = tok(["the cat sat on", "hello"], padding=True, return_tensors="pt")
    want = AutoModelForCausalLM.from_pretrained(gpt2).eval().generate(**inputs, **GREEDY)
    folder = optimum_export(cli, gpt2, "text-generation-with-past", root / "gpt2")
    for cls in (ORTModelForCausalLM, OVModelForCausalLM):
        same = torch.equal(cls.from_pretrained(folder).generate(**inputs, **GREEDY), want)
        print(f"gpt2 {cls.__name__}: greedy tokens identical {same}")
        assert same

    ir = optimum_intel_export(cli, gpt2, "text-generation-with-past", root / "gpt2-ov")
    if ir is not None:  # optimum-intel's stateful decoder IR (a beam_idx input, the cache in state variables)
        reference = AutoModelForCausalLM.from_pretrained(gpt2).eval()
        one = tok(["the cat sat on"], return_tensors="pt")
        for engine in ("native", "transformers"):
            model = OVModelForCausalLM.from_pretrained(ir, generation_engine=engine)
            same = torch.equal(model.generate(**one, **GREEDY), reference.generate(**one, **GREEDY))
            print(f"gpt2 optimum-intel stateful IR, {model.last_generation_engine}: greedy tokens identical {same}")
            assert same
        beams = dict(GREEDY, num_beams=3)
        same = torch.equal(model.generate(**inputs, **GREEDY), want) and torch.equal(
            model.generate(**one, **beams), reference.generate(**one, **beams))
        print(f"gpt2 optimum-intel stateful IR: padded batch and beam search identical {same}")
        assert same
        ir = optimum_intel_export(cli, bert, "text-classification", root / "bert-ov")
        got = OVModelForSequenceClassification.from_pretrained(ir)(input_ids=ids).logits
        want_bert = AutoModelForSequenceClassification.from_pretrained(bert).eval()(input_ids=ids).logits
        diff = (got - want_bert).abs().max().item()
        print(f"bert optimum-intel IR: max abs diff {diff:.1e}")
        assert diff < 1e-4

    tok = AutoTokenizer.from_pretrained(t5)
    inputs = tok(["the cat sat on the mat", "hello"], padding=True, return_tensors="pt")
    want = AutoModelForSeq2SeqLM.from_pretrained(t5).eval().generate(**inputs, **GREEDY)
    folder = optimum_export(cli, t5, "text2text-generation-with-past", root / "t5")
    merged_only = root / "t5-merged-only"
    shutil.copytree(folder, merged_only)
    for name in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
        (merged_only / name).unlink()
    for cls, where in ((ORTModelForSeq2SeqLM, folder), (OVModelForSeq2SeqLM, folder), (ORTModelForSeq2SeqLM, merged_only)):
        same = torch.equal(cls.from_pretrained(where).generate(**inputs, **GREEDY), want)
        print(f"t5 {cls.__name__} on {where.name}: greedy tokens identical {same}")
        assert same


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
