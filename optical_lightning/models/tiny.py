"""Tiny random-weight models for fast tests - never a default.

* :func:`tiny_encoder`: a BERT encoder (``teacher=tiny student=tiny``). Its tokenizer is character-level
  WordPiece over a fixed alphabet, so it needs no download and no training data and still tokenises any
  Latin-script text (other characters become ``[UNK]``).
* :func:`tiny_causal_lm`: a 4-layer Qwen2 causal LM read as an encoder (``teacher=tiny_lm student=tiny_lm``).
  Its tokenizer is a byte-level BPE like Qwen's (any text, no unknown token), with merges learnt from
  :data:`BPE_SAMPLE` when it is built (a few milliseconds, deterministic), and Qwen's special tokens.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers import models as tokenizer_models
from tokenizers.models import WordPiece
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from optical_lightning.models.causal_lm import CausalLMEncoder, resolve_dtype
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
    teacher: object = None,
    **encoder_kwargs,
) -> Encoder:
    """A randomly initialised BERT (seeded) wrapped as an :class:`Encoder` (``trainable_layers`` and
    ``lora`` as in :func:`~optical_lightning.models.loading.load_encoder`; ``teacher``, which the pipeline
    passes to every student builder, is not needed)."""
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


#: what the tiny LM's BPE merges are learnt from: English and Swahili, as the tests' bitext
BPE_SAMPLE = (
    "The health workers visited the village today.",
    "Wahudumu wa afya walitembelea kijiji leo.",
    "All human beings are born free and equal in dignity and rights.",
    "Watu wote wamezaliwa huru, hadhi na haki zao ni sawa.",
    "Wash your hands with soap and water to prevent the spread of the virus.",
    "Nawa mikono yako kwa sabuni na maji ili kuzuia kuenea kwa virusi.",
    "People with symptoms of the disease should stay at home and call a doctor.",
    "Watu wenye dalili za ugonjwa wanapaswa kukaa nyumbani na kumpigia daktari simu.",
)
LM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # Qwen's: pad (and BOS), chat start, EOS


def bpe_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Qwen's kind) with merges learnt from :data:`BPE_SAMPLE`; no BOS is added."""
    bpe = Tokenizer(tokenizer_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(BPE_SAMPLE, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=LM_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"])


def tiny_causal_lm(
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 4,
    seed: int = 0,
    align_layer: int = 2,
    frozen: bool = True,
    dtype: str = "32",
    **view_kwargs,
) -> CausalLMEncoder:
    """A randomly initialised (seeded) Qwen2 causal LM, float32 unless ``dtype`` says otherwise, read as an encoder
    after ``align_layer`` decoder layers (the other settings as in
    :func:`~optical_lightning.models.causal_lm.load_causal_lm`)."""
    tokenizer = bpe_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=256, tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lm = Qwen2ForCausalLM(config).eval().to(resolve_dtype(dtype))
    return CausalLMEncoder(lm, tokenizer, align_layer=align_layer, frozen=frozen,
                           name=f"tiny-qwen2-h{hidden_size}-l{num_layers}-s{seed}", **view_kwargs)
