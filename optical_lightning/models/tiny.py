"""Tiny random-weight BERT encoders for fast tests (``teacher=tiny student=tiny``) - never a default.

The tokenizer is character-level WordPiece over a fixed alphabet, so it needs no download and no
training data and still tokenises any Latin-script text (other characters become ``[UNK]``).
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from optical_lightning.models.encoder import Encoder

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def char_tokenizer() -> PreTrainedTokenizerFast:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(chars) + [f"##{c}" for c in chars])}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=64))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def tiny_encoder(
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    seed: int = 0,
    projection: bool = False,
    target_dim: int | None = None,
    frozen: bool = False,
    dropout: float = 0.1,
    trainable_layers: int | None = None,
    lora: dict | None = None,
    **encoder_kwargs,
) -> Encoder:
    """A randomly initialised BERT (seeded) wrapped as an :class:`Encoder` (``trainable_layers`` and
    ``lora`` as in :func:`~optical_lightning.models.loading.load_encoder`)."""
    tokenizer = char_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size, max_position_embeddings=256,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = BertModel(config, add_pooling_layer=False)
    proj_dim = (target_dim or hidden_size) if projection else None
    encoder = Encoder(backbone, tokenizer, projection_dim=proj_dim, frozen=frozen, name=f"tiny-bert-h{hidden_size}-s{seed}",
                      **encoder_kwargs)
    if target_dim is not None and encoder.dim != target_dim:
        from optical_lightning.utils.errors import ConfigError

        raise ConfigError(f"tiny student embeds in {encoder.dim} dimensions but the teacher in {target_dim}: "
                          f"set student.projection=true")
    if trainable_layers is not None and not frozen:
        encoder.train_top_layers(trainable_layers)
    if lora is not None and not frozen:
        encoder.add_lora(**dict(lora))
    return encoder
