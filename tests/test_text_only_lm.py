"""The text-only path for a multimodal decoder LM (llava): its language model + LM head exported for
text-generation, generating token-identical to the llava model called with text only."""

from __future__ import annotations

import pytest
import torch
import transformers

from optibridge.artifact import Artifact
from optibridge.cli import main
from optibridge.errors import InputError
from tiny_vision import build_tiny_llava


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    root = tmp_path_factory.mktemp("llava")
    source = build_tiny_llava(root / "src")
    assert main(["export", "--model", str(source), "--task", "text-generation", str(root / "onnx")]) == 0
    return source, Artifact.load(root / "onnx")


def test_artifact_is_the_language_model_and_says_images_are_not_supported(llava, capsys):
    _, artifact = llava
    meta = artifact.metadata
    assert meta.task == "text-generation" and meta.model_type == "llama" and meta.validation["passed"]
    assert meta.extra["text_only"]["source_model_type"] == "llava"
    assert [s.name for s in meta.inputs][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert not any("pixel" in s.name for s in meta.inputs)
    assert main(["info", str(artifact.path)]) == 0
    assert "text only: the language model of a llava model; image inputs are not supported" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_generate_matches_llava_called_with_text_only(llava, backend):
    from optibridge import OBModelForCausalLM

    source, artifact = llava
    reference = transformers.LlavaForConditionalGeneration.from_pretrained(source).eval()
    ids = torch.randint(5, 500, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                  output_scores=True, return_dict_in_generate=True)
    want = reference.generate(**kwargs)
    got = OBModelForCausalLM.from_pretrained(artifact.path, backend=backend).generate(**kwargs)
    assert torch.equal(got.sequences, want.sequences) and len(set(want.sequences[:, 6:].flatten().tolist())) > 5
    torch.testing.assert_close(torch.stack(got.scores), torch.stack(want.scores), atol=1e-4, rtol=0)


def test_image_inputs_are_refused_with_the_reason(llava):
    from optibridge import OBModelForCausalLM

    model = OBModelForCausalLM.from_pretrained(llava[1].path)
    with pytest.raises(InputError, match="pixel_values: image inputs are not supported; this artifact is the text-only export of a llava model"):
        model.generate(input_ids=torch.tensor([[5, 6, 7]]), pixel_values=torch.zeros(1, 3, 32, 32), max_new_tokens=2)


def test_image_to_text_on_a_decoder_lm_points_to_the_text_only_path(llava, capsys):
    code = main(["export", "--model", str(llava[0]), "--task", "image-to-text", "unused"])
    err = capsys.readouterr().err
    assert code != 0 and "llava is a decoder LM that takes images: export it with --task image-text-to-text" in err and "--task text-generation" in err
