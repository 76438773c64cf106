"""The token table the mask and walk tests share: a trained BPE and the real Qwen3 vocabulary."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from gateway.structured.tokens import TokenTable


@pytest.fixture(scope="module", params=["trained", "qwen3"])
def table(request, trained_tokenizer_dir, qwen3_tokenizer_dir):
    path = trained_tokenizer_dir if request.param == "trained" else qwen3_tokenizer_dir
    hf = AutoTokenizer.from_pretrained(path)
    return TokenTable.from_hf(hf, len(hf), frozenset({hf.eos_token_id}))
