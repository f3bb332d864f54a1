"""The composed multimodal LLM: vision encoder -> projector -> visual prefix of the decoder LM.

The model also carries the CLIP text tower and temperature used by vision pretraining (stage 0a)
and caption retrieval, so one checkpoint holds every trained part.

Sequence layout (see :mod:`hyperet.batching`): ``[visual tokens] <bos> prompt <sep> answer <eos>``,
right-padded; the loss is next-token cross-entropy on the positions whose label is not ``-100``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperet.alignment.aligner import AlignerConfig, ImageTextAligner
from hyperet.batching import IGNORE
from hyperet.config import RunConfig, is_itc
from hyperet.data import Tokenizer
from hyperet.model.clip import ContrastiveHead, TextEncoder
from hyperet.model.language import LanguageModel
from hyperet.model.projector import Projector
from hyperet.model.vision import VisionEncoder

#: Learnable queries of the ITC aligner's connector (our default; see docs/alignment.md).
ALIGNER_QUERIES = 8


class MLLM(nn.Module):
    """Vision encoder + projector + language model (+ CLIP text tower for stage 0a).

    ``aligner``: the config of the image-text aligner of the ITC objectives
    (:func:`aligner_config`); the model then has an ``aligner`` part (registered last, so the
    other parts' initialisation does not depend on it), otherwise none.
    """

    def __init__(
        self, config: RunConfig, *, vocab_size: int, aligner: AlignerConfig | None = None
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.vision = VisionEncoder(config.vision, image_size=config.data.image_size)
        self.text = TextEncoder(
            config.text,
            vocab_size=vocab_size,
            max_len=config.language.max_text_len,
            embed_dim=config.vision.embed_dim,
        )
        self.clip_head = ContrastiveHead()
        self.projector = Projector(
            config.projector,
            vision_width=config.vision.width * (2 if config.projector.patch_tokens else 1),
            lm_width=config.language.width,
            tokens=self.vision.num_tokens,
        )
        self.feature_layer = config.projector.feature_layer
        self.patch_tokens = config.projector.patch_tokens
        self.lm = LanguageModel(config.language, vocab_size=vocab_size)
        if aligner is not None:
            self.aligner = ImageTextAligner(aligner)

    def image_text_aligner(self) -> ImageTextAligner:
        """The ``aligner`` part; ``ValueError`` when the model has none (an ``lm`` run)."""
        aligner = getattr(self, "aligner", None)
        if not isinstance(aligner, ImageTextAligner):
            raise ValueError("model: no aligner (the run's objective is not an ITC one)")
        return aligner

    def visual_features(self, images: Tensor) -> Tensor:
        """The ViT tokens ``(B, N, Dv)`` the projector reads (``projector.feature_layer``).

        With ``projector.patch_tokens`` ``(B, N, 2 Dv)``: ``feature_layer``'s tokens, then the
        patch tokens (layer 0), from one pass of the ViT.
        """
        if not self.patch_tokens:
            return self.vision(images, layer=self.feature_layer)
        high, low = self.vision.layers(images, (self.feature_layer, 0))
        return torch.cat([high, low], dim=-1)  # (B, N, 2 Dv)

    def visual_prefix(self, images: Tensor | None, features: Tensor | None) -> Tensor | None:
        """Projected visual tokens ``(B, P, Dlm)`` from images or cached vision features."""
        if images is not None and features is not None:
            raise ValueError("images: pass images or cached features, not both")
        if images is not None:
            features = self.visual_features(images)  # (B, N, Dv)
        if features is None:
            return None
        return self.projector(features)  # (B, P, Dlm)

    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        *,
        images: Tensor | None = None,
        features: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``(logits (B, T, V), loss)``; without images or features the LM runs text-only.

        .. math::
            \\mathcal{L} = -\\frac{1}{|S|} \\sum_{(b, t) \\in S}
                \\log p(y_{b, t+1} \\mid \\text{visual tokens}, y_{b, \\le t}),
            \\qquad S = \\{(b, t) : \\text{labels}_{b, t+1} \\ne -100\\}
        """
        prefix = self.visual_prefix(images, features)
        logits = self.lm(input_ids, prefix)  # (B, T, V)
        loss = None if labels is None else next_token_loss(logits, labels)
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        lengths: Tensor,
        *,
        eos_id: int,
        max_new_tokens: int,
        images: Tensor | None = None,
        features: Tensor | None = None,
    ) -> list[list[int]]:
        """Greedy decoding after right-padded prompts; returns the new ids (``<eos>`` excluded).

        ``input_ids`` ``(B, T)`` holds each prompt in its first ``lengths[b]`` positions. The
        prompts run once (:meth:`LanguageModel.prefill`); each new token then runs alone
        against the cached keys and values (:meth:`LanguageModel.step`), written at its row's
        own position, so a row's pads are overwritten before any token attends to them. Tested
        against re-running the whole sequence for every token (:meth:`generate_uncached`).
        """
        prefix = self.visual_prefix(images, features)
        b, t = input_ids.shape
        logits, cache = self.lm.prefill(input_ids, prefix, t + max_new_tokens)  # (B, T, V)
        rows = torch.arange(b)
        nxt = logits[rows, lengths - 1].argmax(dim=-1)  # (B,)
        position = lengths.clone()  # text position of each row's next token
        done = torch.zeros(b, dtype=torch.bool)
        out: list[list[int]] = [[] for _ in range(b)]
        for new in range(max_new_tokens):
            _take(nxt, done, out, eos_id)
            if bool(done.all()) or new == max_new_tokens - 1:
                break
            # finished rows keep stepping at their last position (their output is final)
            nxt = self.lm.step(nxt, position, cache).argmax(dim=-1)
            position = torch.where(done, position, position + 1)
        return out

    @torch.no_grad()
    def generate_uncached(
        self,
        input_ids: Tensor,
        lengths: Tensor,
        *,
        eos_id: int,
        max_new_tokens: int,
        images: Tensor | None = None,
        features: Tensor | None = None,
    ) -> list[list[int]]:
        """:meth:`generate` by re-running the whole sequence for every new token (the literal
        definition; the test oracle of the cached decoder)."""
        prefix = self.visual_prefix(images, features)
        b = input_ids.shape[0]
        ids = torch.cat([input_ids, input_ids.new_zeros(b, max_new_tokens)], dim=1)
        lengths = lengths.clone()
        rows = torch.arange(b)
        done = torch.zeros(b, dtype=torch.bool)
        out: list[list[int]] = [[] for _ in range(b)]
        for _ in range(max_new_tokens):
            width = int(lengths.max())
            logits = self.lm(ids[:, :width], prefix)  # (B, width, V)
            nxt = logits[rows, lengths - 1].argmax(dim=-1)  # (B,)
            _take(nxt, done, out, eos_id)
            ids[rows[~done], lengths[~done]] = nxt[~done]
            lengths[~done] += 1
            if bool(done.all()):
                break
        return out

    @torch.no_grad()
    def sequence_logprob(
        self,
        input_ids: Tensor,
        labels: Tensor,
        *,
        images: Tensor | None = None,
        features: Tensor | None = None,
    ) -> Tensor:
        """Summed log-probability ``(B,)`` of each row's labelled tokens (option likelihood)."""
        logits, _ = self.forward(input_ids, images=images, features=features)
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
        target = labels[:, 1:]
        mask = target != IGNORE
        picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        return (picked * mask).sum(dim=1)


def _take(tokens: Tensor, done: Tensor, out: list[list[int]], eos_id: int) -> None:
    """Append each unfinished row's new token to ``out``; ``<eos>`` finishes the row instead."""
    for r in torch.nonzero(~done).flatten().tolist():
        token = int(tokens[r])
        if token == eos_id:
            done[r] = True
        else:
            out[r].append(token)


def next_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits[:, t]`` against ``labels[:, t + 1]`` (``-100`` ignored)."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"labels: shape {tuple(labels.shape)} does not match logits {tuple(logits.shape[:2])}"
        )
    return F.cross_entropy(  # in float32 also under bfloat16 autocast
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE,
    )


def aligner_config(config: RunConfig, tokenizer: Tokenizer) -> AlignerConfig | None:
    """The aligner of a run (``None`` for the ``lm`` objective): sized like the run's CLIP text
    tower, over the ViT's tokens, with the objective's recipe."""
    if not is_itc(config.train.objective):
        return None
    return AlignerConfig.for_objective(
        config.train.objective,
        vision_dim=config.vision.width,
        vocab_size=tokenizer.vocab_size,
        width=config.text.width,
        embed_dim=config.vision.embed_dim,
        num_queries=ALIGNER_QUERIES,
        depth=config.text.layers,
        heads=config.text.heads,
        max_text_len=config.language.max_text_len,
        pad_id=tokenizer.pad_id,
        special_ids=(tokenizer.bos_id, tokenizer.eos_id, tokenizer.image_id, tokenizer.sep_id),
    )


def build_model(config: RunConfig, tokenizer: Tokenizer) -> MLLM:
    """A freshly initialised model of a run (weights depend only on ``config.seed``)."""
    torch.manual_seed(config.seed)
    return MLLM(config, vocab_size=tokenizer.vocab_size, aligner=aligner_config(config, tokenizer))
