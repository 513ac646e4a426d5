"""X-vector heads (``Wav2Vec2ForXVector`` and the wavlm / unispeech-sat / data2vec-audio copies of it)
with a statistics pooling an exported graph can run at any batch size.

transformers pools a padded batch one example at a time (``for i, length in enumerate(lengths)``),
which tracing unrolls into a graph fixed to the traced batch. :class:`XVectorExport` computes the
same mean and (unbiased) standard deviation over each example's frames with a mask instead, from the
same length formulas; everything before and after the pooling is the model's own modules. It is
checked against the model's own forward on a padded batch when it is built, so a transformers
release that changes the head fails here, by name, instead of exporting something else.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UnsupportedModelError

SELF_CHECK_TOLERANCE = 1e-5


class XVectorExport(torch.nn.Module):
    """``model``'s forward (logits and embeddings) with a vectorised, mask-aware statistics pooling."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        for part in ("projector", "tdnn", "feature_extractor", "classifier", "_get_feat_extract_output_lengths",
                     "_get_tdnn_output_lengths"):
            if not hasattr(model, part):
                raise UnsupportedModelError(f"{type(model).__name__} has no {part!r}: not the x-vector head optibridge exports")
        self.model = model
        self.config = model.config
        self.eval()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, return_dict: bool = True) -> Any:
        from transformers.modeling_outputs import XVectorOutput

        model = self.model
        weighted = bool(getattr(self.config, "use_weighted_layer_sum", False))
        outputs = model.base_model(input_values, attention_mask=attention_mask, output_hidden_states=weighted, return_dict=True)
        if weighted:
            stacked = torch.stack(outputs.hidden_states, dim=1)
            weights = torch.nn.functional.softmax(model.layer_weights, dim=-1)
            hidden = (stacked * weights.view(-1, 1, 1)).sum(dim=1)
        else:
            hidden = outputs.last_hidden_state
        hidden = model.projector(hidden)
        for layer in model.tdnn:
            hidden = layer(hidden)
        if attention_mask is None:
            mean, std = hidden.mean(dim=1), hidden.std(dim=1)
        else:
            lengths = model._get_tdnn_output_lengths(model._get_feat_extract_output_lengths(attention_mask.sum(dim=1)))
            # hidden[i, :length] in transformers: a length past the last frame takes them all
            counts = torch.minimum(lengths, torch.full_like(lengths, hidden.shape[1])).to(hidden.dtype).unsqueeze(-1)
            frames = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
            mask = (frames < counts).to(hidden.dtype).unsqueeze(-1)
            mean = (hidden * mask).sum(dim=1) / counts
            std = ((((hidden - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / (counts - 1)).sqrt()
        embeddings = model.feature_extractor(torch.cat([mean, std], dim=-1))
        return XVectorOutput(logits=model.classifier(embeddings), embeddings=embeddings)

    def check_against_the_model(self, samples: int) -> None:
        """The pooling above against the model's own loop, on a batch whose second row is padded."""
        generator = torch.Generator().manual_seed(0)
        values = torch.randn(2, samples, generator=generator)
        mask = torch.ones(2, samples, dtype=torch.int64)
        mask[1, samples * 2 // 3:] = 0
        values[1, samples * 2 // 3:] = 0.0
        with torch.no_grad():
            ours, theirs = self(values, mask), self.model(values, attention_mask=mask)
        worst = max(float((ours.logits - theirs.logits).abs().max()), float((ours.embeddings - theirs.embeddings).abs().max()))
        if not worst <= SELF_CHECK_TOLERANCE:
            raise UnsupportedModelError(
                f"{type(self.model).__name__}: optibridge's batched x-vector pooling differs from the model's own by {worst:.2e} "
                f"(> {SELF_CHECK_TOLERANCE}); this transformers release changed the head, so it is not exported"
            )
