"""Text encoders for text-to-motion: each maps a list of captions to

* ``tokens [B, S, out_dims]`` -- one vector per token (cross-attention),
* ``mask [B, S]`` bool -- True for real tokens (at least one per caption:
  the BOS token, so the empty caption ``''`` is a valid condition),
* ``pooled [B, out_dims]`` -- one vector per caption (AdaLN/FiLM).
"""
import re
import zlib

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from convattn_mm.registry import MODELS

_WORD = re.compile(r"[a-z0-9']+")


@MODELS.register_module()
class HashedWordEncoder(BaseModule):
    """A small trainable text encoder that needs no download.

    Words (lower-case ``[a-z0-9']+``) hash (CRC-32) into ``vocab_size - 2``
    buckets; id 0 is padding, id 1 the BOS token that starts every caption.
    Embeddings plus a learned table over the first ``max_words + 1`` token
    positions go through ``num_layers`` transformer encoder layers; the BOS
    output is the pooled vector.

    Args:
        embed_dims (int): token width (``out_dims``).
        vocab_size (int): hash buckets + 2.
        num_layers (int), num_heads (int): the transformer.
        max_words (int): longer captions are cut.
    """
    PAD, BOS = 0, 1

    def __init__(self, embed_dims=128, vocab_size=2048, num_layers=2,
                 num_heads=4, max_words=32, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if vocab_size < 3:
            raise ValueError(f'vocab_size={vocab_size} must be >= 3')
        self.out_dims, self.vocab_size = embed_dims, vocab_size
        self.max_words = max_words
        self.embed = nn.Embedding(vocab_size, embed_dims)
        self.pos = nn.Parameter(torch.zeros(max_words + 1, embed_dims))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            embed_dims, num_heads, 2 * embed_dims, dropout=0.0,
            batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers,
                                             enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dims)

    def token_ids(self, captions):
        """``[B, S]`` long ids (BOS, words, padding)."""
        rows = []
        for c in captions:
            words = _WORD.findall(c.lower())[:self.max_words]
            rows.append([self.BOS] + [
                2 + zlib.crc32(w.encode()) % (self.vocab_size - 2)
                for w in words
            ])
        S = max((len(r) for r in rows), default=1)
        ids = torch.full((len(rows), S), self.PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
        return ids.to(self.pos.device)

    def forward(self, captions):
        ids = self.token_ids(captions)
        mask = ids != self.PAD
        x = self.embed(ids) + self.pos[:ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        return dict(tokens=x, mask=mask, pooled=x[:, 0])


@MODELS.register_module()
class CLIPTextEncoder(BaseModule):
    """A frozen CLIP text tower through Hugging Face ``transformers``.

    ``transformers`` is not installed with this package (``pip install
    transformers``) and no weights ship with it: ``pretrained`` is a local
    folder (or a hub name the user's ``transformers`` can load, e.g.
    ``'openai/clip-vit-base-patch32'`` once downloaded). It is imported when
    the encoder is built.

    Args:
        pretrained (str): path or name for ``from_pretrained``.
        max_length (int): tokens per caption (CLIP: 77).
        frozen (bool): no gradients and eval mode (default True).
    """

    def __init__(self, pretrained, max_length=77, frozen=True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as e:
            raise ImportError(
                'CLIPTextEncoder needs transformers: pip install '
                'transformers (see docs/text2motion.md)') from e
        self.tokenizer = CLIPTokenizer.from_pretrained(pretrained)
        self.model = CLIPTextModel.from_pretrained(pretrained)
        self.out_dims = self.model.config.hidden_size
        self.max_length, self.frozen = max_length, frozen
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def forward(self, captions):
        device = next(self.model.parameters()).device
        enc = self.tokenizer(list(captions), padding=True, truncation=True,
                             max_length=self.max_length,
                             return_tensors='pt').to(device)
        grad = not self.frozen and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            out = self.model(**enc)
        return dict(tokens=out.last_hidden_state,
                    mask=enc['attention_mask'].bool(),
                    pooled=out.pooler_output)
