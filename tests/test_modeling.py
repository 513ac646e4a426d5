"""The drop-in classes: same call, same output types, pipelines, save/load, Optimum names, input errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, pipeline

from optibridge import OBModelForQuestionAnswering, OBModelForSequenceClassification
from optibridge.errors import ArtifactError, BackendError, InputError
from optibridge.modeling import TASK_CLASSES
from optibridge.tasks import TASKS

SENTENCES = ["the cat sat on the mat", "paris is the capital of france", "hello", "a dog ran in the park today"]


def _pt(path, task):
    return getattr(transformers, TASKS[task].auto_class).from_pretrained(path).eval()


def test_torch_in_torch_out_and_numpy_in_numpy_out(exported, tiny_model):
    path = tiny_model("bert", "feature-extraction")
    model = TASK_CLASSES["feature-extraction"].from_pretrained(exported("bert", "feature-extraction").path)
    tok = AutoTokenizer.from_pretrained(path)
    out_pt = model(**tok(SENTENCES, padding=True, return_tensors="pt"))
    out_np = model(**tok(SENTENCES, padding=True, return_tensors="np"))
    assert isinstance(out_pt.last_hidden_state, torch.Tensor) and isinstance(out_np.last_hidden_state, np.ndarray)
    np.testing.assert_array_equal(out_pt.last_hidden_state.numpy(), out_np.last_hidden_state)
    expected = _pt(path, "feature-extraction")(**tok(SENTENCES, padding=True, return_tensors="pt"))
    assert type(out_pt) is type(expected)  # BaseModelOutputWithPoolingAndCrossAttentions for BERT
    assert out_pt.pooler_output.shape == expected.pooler_output.shape


def test_torch_like_surface(exported):
    model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path)
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.to("cpu") is model and model.to(torch.float32) is model and model.eval() is model
    assert model.config.id2label == {0: "NEG", 1: "NEU", 2: "POS"}
    assert model.can_generate() is False
    with pytest.raises(BackendError, match="runs on backend 'ort' \\(cpu\\); to run on cuda"):
        model.to("cuda")


def test_positional_call_and_return_dict_false(exported):
    model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path)
    ids = torch.randint(5, 100, (2, 6))
    by_keyword = model(input_ids=ids).logits
    (as_tuple,) = model(ids, return_dict=False)
    torch.testing.assert_close(by_keyword, as_tuple)


@pytest.mark.parametrize(
    "task,model_type",
    [("text-classification", "bert"), ("token-classification", "roberta"), ("fill-mask", "bert"),
     ("feature-extraction", "distilbert"), ("text-classification", "deberta-v2")],
)
def test_text_pipelines_match_pytorch(task, model_type, exported, tiny_model):
    path = tiny_model(model_type, task)
    tok = AutoTokenizer.from_pretrained(path)
    ours = pipeline(task, model=TASK_CLASSES[task].from_pretrained(exported(model_type, task).path), tokenizer=tok)
    theirs = pipeline(task, model=_pt(path, task), tokenizer=tok)
    inputs = ["the cat sat on the [MASK]", "paris is the [MASK] of france"] if task == "fill-mask" else SENTENCES
    got, want = ours(inputs), theirs(inputs)
    if task == "feature-extraction":
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.array(g), np.array(w), atol=1e-4)
        return
    _assert_same_predictions(got, want)


def _assert_same_predictions(got, want):
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            if key == "score":
                assert got[key] == pytest.approx(want[key], abs=1e-4)
            else:
                assert got[key] == want[key], key
        return
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _assert_same_predictions(g, w)


def test_image_classification_pipeline_matches_pytorch(exported, tiny_model):
    path = tiny_model("vit", "image-classification")
    processor = AutoImageProcessor.from_pretrained(path)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for _ in range(3)]
    model = TASK_CLASSES["image-classification"].from_pretrained(exported("vit", "image-classification").path)
    got = pipeline("image-classification", model=model, image_processor=processor)(images)
    want = pipeline("image-classification", model=_pt(path, "image-classification"), image_processor=processor)(images)
    _assert_same_predictions(got, want)


def test_question_answering_returns_pytorch_start_and_end_logits(exported, tiny_model):
    path = tiny_model("bert", "question-answering")
    tok = AutoTokenizer.from_pretrained(path)
    inputs = tok(["where is the cat", "who ran"], ["the cat sat on the mat", "a dog ran in the park"], padding=True, return_tensors="pt")
    got = OBModelForQuestionAnswering.from_pretrained(exported("bert", "question-answering").path)(**inputs)
    want = _pt(path, "question-answering")(**inputs)
    assert type(got).__name__ == "QuestionAnsweringModelOutput"
    torch.testing.assert_close(got.start_logits, want.start_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.end_logits, want.end_logits, atol=1e-4, rtol=0)
    if "question-answering" in transformers.pipelines.SUPPORTED_TASKS:  # removed in transformers 5.x
        qa = pipeline("question-answering", model=OBModelForQuestionAnswering.from_pretrained(exported("bert", "question-answering").path), tokenizer=tok)
        ref = pipeline("question-answering", model=_pt(path, "question-answering"), tokenizer=tok)
        _assert_same_predictions(qa(question="where", context="the cat sat"), ref(question="where", context="the cat sat"))


def test_multiple_choice_takes_the_choices_axis(exported, tiny_model):
    path = tiny_model("bert", "multiple-choice")
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(["the cat"] * 3, ["sat on the mat", "ran", "is a dog"], padding=True, return_tensors="pt")
    inputs = {k: v.unsqueeze(0) for k, v in enc.items()}
    got = TASK_CLASSES["multiple-choice"].from_pretrained(exported("bert", "multiple-choice").path)(**inputs)
    want = _pt(path, "multiple-choice")(**inputs)
    assert got.logits.shape == (1, 3)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-4, rtol=0)


def test_export_on_the_fly_then_save_and_reload(tiny_model, tmp_path):
    path = tiny_model("electra", "text-classification")
    model = OBModelForSequenceClassification.from_pretrained(path, export=True)
    model.save_pretrained(tmp_path / "saved")
    again = OBModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    ids = torch.randint(5, 100, (2, 9))
    torch.testing.assert_close(model(input_ids=ids).logits, again(input_ids=ids).logits)
    assert again.artifact.metadata.model_type == "electra"


def test_save_pretrained_keeps_what_a_user_saved_beside_the_model(exported, tmp_path):
    """As transformers' save_pretrained: a tokenizer (or README) saved into the folder before or after
    the model stays there at the next save; a folder that may hold another model is still refused."""
    from transformers import AutoTokenizer

    from optibridge.artifact import Artifact

    artifact = exported("bert", "text-classification")
    model = OBModelForSequenceClassification.from_pretrained(artifact.path)
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    ids = torch.randint(5, 100, (2, 5))
    for first in ("model", "tokenizer"):
        folder = tmp_path / first
        for _ in range(2):  # a checkpoint loop saves both, again and again
            for saver in ((model, tokenizer) if first == "model" else (tokenizer, model)):
                saver.save_pretrained(folder)
            (folder / "README.md").write_text("my notes")
        assert (folder / "README.md").read_text() == "my notes" and (folder / "tokenizer.json").is_file()
        assert torch.equal(OBModelForSequenceClassification.from_pretrained(folder)(input_ids=ids).logits, model(input_ids=ids).logits)
        Artifact.load(folder, verify_hashes=True, require_hashes=True)
    weights = tmp_path / "another-model"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"not ours")
    with pytest.raises(ArtifactError, match="is not empty and is not an optibridge artifact"):
        model.save_pretrained(weights)
    assert [p.name for p in weights.iterdir()] == ["model.safetensors"]


def test_a_transformers_folder_with_export_false_is_a_clear_error(tiny_model):
    with pytest.raises(ArtifactError, match="not an optibridge artifact .*pass export=True"):
        OBModelForSequenceClassification.from_pretrained(tiny_model("bert", "text-classification"), export=False)


def test_loading_an_artifact_with_the_wrong_task_class_names_the_right_class(exported):
    with pytest.raises(ArtifactError, match="exported for 'fill-mask'.*load it with OBModelForMaskedLM"):
        OBModelForSequenceClassification.from_pretrained(exported("bert", "fill-mask").path)


def test_the_deberta_tokenizers_token_type_ids_are_accepted_though_the_graph_has_none(exported, tiny_model):
    path = tiny_model("deberta-v2", "text-classification")
    tok = AutoTokenizer.from_pretrained(path)
    model = OBModelForSequenceClassification.from_pretrained(exported("deberta-v2", "text-classification").path)
    assert "token_type_ids" not in model.artifact.metadata.input_names
    inputs = tok(SENTENCES, padding=True, return_tensors="pt")
    assert "token_type_ids" in inputs
    torch.testing.assert_close(model(**inputs).logits, _pt(path, "text-classification")(**inputs).logits, atol=1e-4, rtol=0)


def test_roberta_token_type_ids_are_dropped_only_where_pytorch_computes_the_same(exported, tiny_model):
    # RoBERTa's type table has one row: zeros are what the graph embeds, anything else PyTorch refuses.
    path = tiny_model("roberta", "text-classification")
    model = OBModelForSequenceClassification.from_pretrained(exported("roberta", "text-classification").path)
    assert "token_type_ids" not in model.artifact.metadata.input_names
    inputs = AutoTokenizer.from_pretrained(path)(SENTENCES, padding=True, return_tensors="pt")
    types = torch.zeros_like(inputs["input_ids"])
    torch.testing.assert_close(model(**inputs, token_type_ids=types).logits, _pt(path, "text-classification")(**inputs).logits,
                               atol=1e-4, rtol=0)
    types[0, 1] = 1
    with pytest.raises(InputError, match="token_type_ids hold non-zero values.*type_vocab_size = 1.*pass zeros or leave them out"):
        model(**inputs, token_type_ids=types)


def test_token_types_without_a_type_table_follow_the_pytorch_class():
    from transformers import BertConfig, GPT2Config

    from optibridge.modeling.inputs import check_dropped_token_types

    ones = np.ones((1, 3), np.int64)
    check_dropped_token_types(ones, BertConfig(type_vocab_size=0))  # deberta-v3 style: PyTorch ignores them
    check_dropped_token_types(None, GPT2Config(architectures=["GPT2LMHeadModel"]))
    with pytest.raises(InputError, match="GPT2LMHeadModel adds them"):
        check_dropped_token_types(np.zeros((1, 3), np.int64), GPT2Config(architectures=["GPT2LMHeadModel"]))
    with pytest.raises(InputError, match="cannot be told from config.architectures"):
        check_dropped_token_types(ones, GPT2Config(architectures=["NoSuchModel"]))


@pytest.fixture(scope="module")
def model(exported):
    return OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path)


class TestInputErrors:
    def test_missing_required_input(self, model):
        with pytest.raises(InputError, match="no inputs given; this model takes: input_ids \\(batch_size, sequence_length\\)"):
            model(attention_mask=None)

    def test_missing_input_ids_when_others_are_given(self, model):
        with pytest.raises(InputError, match="missing required input 'input_ids' \\(int64, shape \\(batch_size, sequence_length\\)\\)"):
            model(attention_mask=torch.ones(2, 5, dtype=torch.int64))

    def test_wrong_dtype(self, model):
        with pytest.raises(InputError, match="input_ids: expected int64 values of shape \\(batch_size, sequence_length\\), got float32"):
            model(input_ids=torch.rand(2, 5))

    def test_wrong_rank(self, model):
        with pytest.raises(InputError, match="input_ids: expected a 2-D tensor of shape \\(batch_size, sequence_length\\), got shape \\(5,\\)"):
            model(input_ids=torch.arange(5))

    def test_inputs_that_disagree_on_an_axis(self, model):
        with pytest.raises(InputError, match="attention_mask has sequence_length=4 but input_ids has sequence_length=5"):
            model(input_ids=torch.ones(2, 5, dtype=torch.int64), attention_mask=torch.ones(2, 4, dtype=torch.int64))

    def test_unexpected_input(self, model):
        with pytest.raises(InputError, match="unexpected input\\(s\\) pixel_values; this model takes: input_ids"):
            model(input_ids=torch.ones(1, 3, dtype=torch.int64), pixel_values=torch.zeros(1, 3, 8, 8))

    def test_unsupported_pytorch_argument(self, model):
        with pytest.raises(InputError, match="output_attentions is not supported by exported models"):
            model(input_ids=torch.ones(1, 3, dtype=torch.int64), output_attentions=True)
        model(input_ids=torch.ones(1, 3, dtype=torch.int64), output_attentions=False)  # the "off" value is fine

    def test_labels_of_an_evaluation_batch_are_ignored_with_one_warning(self, exported):
        # as Optimum's classes: model(**batch) with the batch's labels runs; there is no loss to return
        model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path)
        ids = torch.randint(5, 100, (2, 4))
        with pytest.warns(UserWarning, match="labels ignored: exported models compute outputs only, no loss"):
            out = model(input_ids=ids, labels=torch.tensor([0, 1]))
        assert out.get("loss") is None
        torch.testing.assert_close(out.logits, model(input_ids=ids).logits, atol=0, rtol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per model, not once per batch
            model(input_ids=ids, labels=torch.tensor([0, 1]))

    def test_int32_ids_are_accepted_like_pytorch_does(self, model):
        ids = torch.randint(5, 100, (2, 4))
        torch.testing.assert_close(model(input_ids=ids.int()).logits, model(input_ids=ids).logits)

    def test_wrong_channel_count_names_the_expected_shape(self, exported):
        # ViT graphs take any height/width now (tests/test_image_sizes.py covers a fixed-size graph's
        # error); the channel axis stays fixed.
        model = TASK_CLASSES["image-classification"].from_pretrained(exported("vit", "image-classification").path)
        with pytest.raises(InputError, match="pixel_values: dimension 1 must be 3 \\(expected shape \\(batch_size, 3, height, width\\)\\)"):
            model(pixel_values=torch.zeros(1, 4, 32, 32))


class TestOptimumNames:
    def test_optimum_style_code_runs_with_only_the_import_changed(self, tiny_model, tmp_path):
        from optibridge.onnxruntime import ORTModelForSequenceClassification

        path = tiny_model("bert", "text-classification")
        model = ORTModelForSequenceClassification.from_pretrained(path, export=True, provider="CPUExecutionProvider")
        model.save_pretrained(tmp_path / "onnx")
        reloaded = ORTModelForSequenceClassification.from_pretrained(tmp_path / "onnx")
        assert reloaded.providers == ["CPUExecutionProvider"]
        assert type(reloaded.model).__name__ == "InferenceSession"
        tok = AutoTokenizer.from_pretrained(tmp_path / "onnx")
        got = pipeline("text-classification", model=reloaded, tokenizer=tok)(SENTENCES)
        want = pipeline("text-classification", model=_pt(path, "text-classification"), tokenizer=tok)(SENTENCES)
        _assert_same_predictions(got, want)

    def test_session_options_object_is_used_as_given(self, exported):
        import onnxruntime as ort

        from optibridge.onnxruntime import ORTModelForSequenceClassification

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        model = ORTModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, session_options=so)
        assert model.model.get_session_options().intra_op_num_threads == 1

    def test_cuda_provider_maps_to_the_cuda_backend_and_fails_clearly_here(self, exported):
        from optibridge.onnxruntime import ORTModelForSequenceClassification

        with pytest.raises(BackendError, match="backend 'cuda' is not usable here"):
            ORTModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path, provider="CUDAExecutionProvider")

    def test_every_task_has_an_optimum_name(self):
        import optibridge.onnxruntime as ortnames

        for cls in TASK_CLASSES.values():
            alias = getattr(ortnames, cls.__name__.replace("OBModel", "ORTModel"))
            assert issubclass(alias, cls)


def test_transformers_4_pipelines_can_tell_that_every_class_is_pytorch():
    """transformers 4.x ``pipeline()`` raises "Could not infer framework" unless a base of the model's
    class is named PreTrainedModel or comes from a torch module (utils.generic.infer_framework there;
    5.x removed the check). ``make compat-4x`` runs the real 4.x pipelines; this keeps the rule in CI."""
    import inspect

    import optibridge.onnxruntime as ort_names
    import optibridge.openvino as ov_names
    from optibridge.modeling import OBModelForCausalLM, OBModelForSeq2SeqLM, OBModelForSpeechSeq2Seq

    classes = [*TASK_CLASSES.values(), OBModelForCausalLM, OBModelForSeq2SeqLM, OBModelForSpeechSeq2Seq]
    classes += [getattr(module, name) for module in (ort_names, ov_names) for name in dir(module) if name.startswith(("ORTModelFor", "OVModelFor"))]
    assert len(classes) > 20
    for cls in classes:
        bases = inspect.getmro(cls)
        assert any(b.__name__ == "PreTrainedModel" or b.__module__.startswith("torch") for b in bases), cls
        assert transformers.PreTrainedModel not in bases  # a marker, not transformers' nn.Module


def test_a_float_mask_of_zeros_and_ones_is_taken_other_float_ids_are_refused(exported):
    """Some processors give masks as floats (Pix2Struct's): 0/1 floats are taken as the integers they are;
    a mask with other values, or float token ids, stays an error."""
    from optibridge import OBModelForSequenceClassification
    from optibridge.errors import InputError

    model = OBModelForSequenceClassification.from_pretrained(exported("bert", "text-classification").path)
    ids = torch.randint(5, 100, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    assert torch.equal(model(input_ids=ids, attention_mask=mask.float()).logits, model(input_ids=ids, attention_mask=mask).logits)
    with pytest.raises(InputError, match="attention_mask: expected int64 .* token ids and masks must be integers"):
        model(input_ids=ids, attention_mask=mask.float() * 0.5)
    with pytest.raises(InputError, match="input_ids: expected int64"):
        model(input_ids=ids.float(), attention_mask=mask)


def test_the_main_input_name_follows_the_graph_where_the_task_modality_does_not_fit():
    from optibridge.modeling.base import main_input_name

    assert main_input_name("text", ["input_ids", "attention_mask"]) == "input_ids"
    assert main_input_name("multimodal", ["input_ids", "attention_mask", "pixel_values"]) == "pixel_values"  # zero-shot: the images
    assert main_input_name("audio", ["input_values", "attention_mask"]) == "input_values"
    # a CTC task (waveform by modality) whose graph takes log-mel features (parakeet)
    assert main_input_name("audio", ["input_features", "attention_mask"]) == "input_features"
    assert main_input_name("vision", ["flattened_patches", "attention_mask"]) == "flattened_patches"
