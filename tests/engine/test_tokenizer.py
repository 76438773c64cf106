"""engine.tokenizer against transformers: same ids, same chat prompts, same decoded text, streamed."""
from __future__ import annotations

import copy
import itertools
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gateway.engine.byte_detokenizer import ByteDetokenizer
from gateway.engine.tokenizer import MAX_HELD_TOKENS, IncrementalDetokenizer, Tokenizer
from gateway.modelgen.tokenizer_files import special_token_ids

TOKENIZER_DIRS = [
    pytest.param("qwen3_tokenizer_dir", marks=pytest.mark.npm, id="qwen3-npm"),
    pytest.param("llama_tokenizer_dir", marks=pytest.mark.npm, id="llama-npm"),
    pytest.param("trained_tokenizer_dir", id="qwen-trained"),
    pytest.param("trained_llama_tokenizer_dir", id="llama-trained"),
]


@pytest.fixture(scope="module", params=TOKENIZER_DIRS)
def pair(request: pytest.FixtureRequest) -> tuple[Tokenizer, PreTrainedTokenizerBase, Path]:
    """Ours and transformers' own loading of the same directory."""
    path: Path = request.getfixturevalue(request.param)
    return Tokenizer.from_dir(path), AutoTokenizer.from_pretrained(path), path


# ----------------------------------------------------------------------------------------------
# Chat conversations, in OpenAI form (what the API receives)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                   "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Web search", "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer"}}}}}


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


CONVERSATIONS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = {
    "user": ([{"role": "user", "content": "Hi there!"}], None),
    "system-user": ([{"role": "system", "content": "You are a pirate."},
                     {"role": "user", "content": "  Say hello.  "}], None),
    "multi-turn": ([{"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": "What is 2+2?"},
                    {"role": "assistant", "content": "4."},
                    {"role": "user", "content": "And 3+3?"},
                    {"role": "assistant", "content": "6."},
                    {"role": "user", "content": "中文呢？ 👩‍👩‍👧 🇯🇵"}], None),
    "tools-offered": ([{"role": "user", "content": "Weather in Oslo?"}], [WEATHER, SEARCH]),
    "tools-with-system": ([{"role": "system", "content": "Use tools when needed."},
                           {"role": "user", "content": "Weather in Oslo?"}], [WEATHER]),
    "tool-round-trip": ([{"role": "system", "content": "Be helpful."},
                         {"role": "user", "content": "Weather in Köln?"},
                         {"role": "assistant", "content": None,
                          "tool_calls": [_call("call_1", "get_weather", {"city": "Köln", "unit": "C"})]},
                         {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21, "sky": "☀️"}'},
                         {"role": "assistant", "content": "It is 21 °C and sunny."},
                         {"role": "user", "content": "Thanks!"}], [WEATHER]),
    "parallel-calls": ([{"role": "user", "content": "Weather in Rome and news about it?"},
                        {"role": "assistant", "content": None, "tool_calls": [
                            _call("a", "get_weather", {"city": "Rome"}),
                            _call("b", "search", {"query": "Rome news", "limit": 3})]},
                        {"role": "tool", "tool_call_id": "a", "content": "25C"},
                        {"role": "tool", "tool_call_id": "b", "content": "Nothing new."}], [WEATHER, SEARCH]),
    "content-and-call": ([{"role": "user", "content": "Look it up."},
                          {"role": "assistant", "content": "Let me check.",
                           "tool_calls": [_call("c", "search", {"query": "東京 天気"})]},
                          {"role": "tool", "tool_call_id": "c", "content": "晴れ"}], [SEARCH]),
}


def hf_form(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same conversation as transformers users write it: arguments as dicts, empty content as ""."""
    out = copy.deepcopy(messages)
    for message in out:
        if message.get("content") is None:
            message["content"] = ""
        for call in message.get("tool_calls", []):
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return out


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_chat_matches_transformers(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path],
                                          name: str, add_generation_prompt: bool) -> None:
    ours, hf, _ = pair
    messages, tools = CONVERSATIONS[name]
    expected = hf.apply_chat_template(hf_form(messages), tools=tools, tokenize=False,
                                      add_generation_prompt=add_generation_prompt)
    assert ours.render_chat(messages, tools=tools, add_generation_prompt=add_generation_prompt) == expected
    assert ours.encode_chat(messages, tools=tools, add_generation_prompt=add_generation_prompt) == \
        hf.apply_chat_template(hf_form(messages), tools=tools, tokenize=True, return_dict=False,
                               add_generation_prompt=add_generation_prompt)


@pytest.mark.npm
def test_qwen3_thinking_switch_matches_transformers(qwen3_tokenizer_dir: Path) -> None:
    ours, hf = Tokenizer.from_dir(qwen3_tokenizer_dir), AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    for (messages, tools), enable_thinking in itertools.product(CONVERSATIONS.values(), (False, True)):
        rendered = ours.render_chat(messages, tools=tools, enable_thinking=enable_thinking)
        assert rendered == hf.apply_chat_template(hf_form(messages), tools=tools, tokenize=False,
                                                  add_generation_prompt=True, enable_thinking=enable_thinking)
        assert rendered.endswith("<think>\n\n</think>\n\n") == (not enable_thinking)


def test_supports_tools_follows_the_template(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path]) -> None:
    ours, hf, _ = pair
    assert ours.supports_tools == ("tools" in hf.chat_template)


def test_developer_role_and_content_parts(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path]) -> None:
    ours, _, _ = pair
    parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "second part"}]
    assert ours.render_chat([{"role": "developer", "content": "Rules."}, {"role": "user", "content": parts}]) == \
        ours.render_chat([{"role": "system", "content": "Rules."},
                          {"role": "user", "content": "first part\nsecond part"}])


@pytest.mark.parametrize("messages, error", [
    ([{"role": "function", "content": "x"}], "unsupported role 'function'"),
    ([{"role": "user", "content": None}], r"messages\[0\]: a user message needs content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
     "content part 'image_url' is not supported"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]}],
     r"messages\[1\]: each tool call needs function.name"),
])
def test_unsupported_messages_are_refused(trained_tokenizer_dir: Path, messages: list[dict], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Tokenizer.from_dir(trained_tokenizer_dir).render_chat(messages)


def _with_template(source_dir: Path, dest: Path, template: str) -> Path:
    shutil.copytree(source_dir, dest)
    config = json.loads((dest / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    return dest


def test_template_exception_becomes_value_error(trained_tokenizer_dir: Path, tmp_path: Path) -> None:
    template = ("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                "{% for m in messages %}{{ m.content }}{% endfor %}")
    path = _with_template(trained_tokenizer_dir, tmp_path / "tok", template)
    ours, hf = Tokenizer.from_dir(path), AutoTokenizer.from_pretrained(path)
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(Exception, match="^System role not supported$"):
        hf.apply_chat_template(chat, tokenize=False)
    with pytest.raises(ValueError, match="^System role not supported$"):
        ours.render_chat(chat)
    assert ours.render_chat(chat[1:]) == "u"


def test_template_environment_matches_transformers(trained_tokenizer_dir: Path, tmp_path: Path) -> None:
    template = (
        "{% set ns = namespace(users=0) %}"
        "{% for m in messages %}{% if m.role != 'user' %}{% continue %}{% endif %}{% set ns.users = ns.users + 1 %}"
        "{% generation %}{{ m | tojson }}|{{ m | tojson(indent=2, sort_keys=true) }}"
        "|{{ m | tojson(separators=(',', ':')) }}{% endgeneration %}{% if loop.index > 2 %}{% break %}{% endif %}"
        "{% endfor %}{{ ns.users }}{{ dict(a=1) | tojson }}{{ dict.fromkeys(['k']) | tojson }}"
        "{{ strftime_now('%Y') }}{{ bos_token }}{{ eos_token }}{{ pad_token }}{{ flavour | default('none') }}"
        "{% if tools %}{{ tools | length }}{% endif %}")
    path = _with_template(trained_tokenizer_dir, tmp_path / "tok", template)
    ours, hf = Tokenizer.from_dir(path), AutoTokenizer.from_pretrained(path)
    chat = [{"role": "user", "content": "<b>é 😀</b>"}, {"role": "assistant", "content": "a"},
            {"role": "user", "content": "x"}, {"role": "user", "content": "y"}, {"role": "user", "content": "z"}]
    for kwargs in ({}, {"flavour": "mint"}, {"tools": [WEATHER]}):
        assert ours.render_chat(chat, **kwargs) == hf.apply_chat_template(chat, tokenize=False,
                                                                         add_generation_prompt=True, **kwargs)


def test_token_ids_match_transformers(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path], tmp_path: Path) -> None:
    ours, hf, path = pair
    assert (ours.vocab_size, ours.bos_token_id, ours.pad_token_id) == (len(hf), hf.bos_token_id, hf.pad_token_id)
    assert ours.eos_token_ids == {hf.eos_token_id}
    shutil.copytree(path, tmp_path / "model")
    generation = special_token_ids(path)
    (tmp_path / "model" / "generation_config.json").write_text(json.dumps(generation))
    assert Tokenizer.from_dir(tmp_path / "model").eos_token_ids == set(generation["eos_token_id"])
    for text in ("Hello  world.\n\n", "<|im_start|>user\nhi<|im_end|>", "東京 🇯🇵 👨‍👩‍👧‍👦 café"):
        for add in (False, True):
            assert ours.encode(text, add_special_tokens=add) == hf.encode(text, add_special_tokens=add)


# ----------------------------------------------------------------------------------------------
# Streaming detokenization

WORDS = ["the", "model", "token", "Hello", "world", "JSON", "x", "42", "3.14", "{", "}", '"key":', "(", ")", "->"]
SCRIPTS = ["東京", "天気", "晴れ", "日本語", "中文", "한국어", "русский", "Ελλάδα", "café", "naïve", "Ångström",
           "e\u0301", "𝔘𝔫𝔦", "😀", "👍🏽", "👨‍👩‍👧‍👦", "👩‍💻", "🏳️‍🌈", "🇯🇵", "🇧🇷", "❤️", "🔥"]
SPACES = [" ", "  ", "\n", "\n\n", "\t", " \n ", ""]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS + SCRIPTS) + rng.choice(SPACES) for _ in range(rng.randint(1, 12)))


def stream(detokenizer: IncrementalDetokenizer, ids: list[int], rng: random.Random) -> list[str]:
    pieces, at = [], 0
    while at < len(ids):
        step = rng.randint(1, 3)
        pieces.append(detokenizer.push(ids[at:at + step]))
        at += step
    return pieces + [detokenizer.flush()]


def test_streamed_pieces_sum_to_the_full_decode(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path]) -> None:
    ours, hf, _ = pair
    rng = random.Random(1234)
    special = hf.all_special_tokens
    normalizer = hf.backend_tokenizer.normalizer  # Qwen's NFC turns "e\u0301" into "é"
    for case in range(1000):
        skip = case % 2 == 1
        from_text = case % 3 != 0
        text = random_text(rng)
        if rng.random() < 0.2:
            text += rng.choice(special) + random_text(rng)
        if from_text:
            ids = ours.encode(text)
        else:
            ids = [rng.randrange(ours.vocab_size) for _ in range(rng.randint(1, 40))]
        full = ours.decode(ids, skip_special_tokens=skip)
        assert full == hf.decode(ids, skip_special_tokens=skip)
        for detokenizer in (ours.detokenizer(skip_special_tokens=skip), ours._window_detokenizer(skip)):
            pieces = stream(detokenizer, ids, rng)
            assert "".join(pieces) == full, (type(detokenizer).__name__, ids, pieces)
            if from_text:
                assert not any("\ufffd" in piece for piece in pieces), (ids, pieces)
        if from_text and not skip:
            assert full == (normalizer.normalize_str(text) if normalizer else text)


def test_byte_level_tokenizers_stream_from_a_byte_table(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path]) -> None:
    """Llama 3's and Qwen's tokenizers (and the trained fallbacks) are byte-level BPE: their streams
    take the table path; the test above holds it to the library's own decode."""
    ours, _, _ = pair
    assert isinstance(ours.detokenizer(), ByteDetokenizer)


def test_large_push_ending_mid_character_holds_it_back(pair: tuple[Tokenizer, PreTrainedTokenizerBase, Path]) -> None:
    ours, _, _ = pair
    text = " ".join(["plain words"] * 20) + " 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👨‍👩‍👧‍👦"
    ids = ours.encode(text)
    cuts = [k for k in range(MAX_HELD_TOKENS + 2, len(ids)) if ours.decode(ids[:k]).endswith("\ufffd")]
    assert cuts, "the text should split some character across tokens"
    for cut in cuts:
        detokenizer = ours.detokenizer()
        first = detokenizer.push(ids[:cut])
        rest = [detokenizer.push([i]) for i in ids[cut:]] + [detokenizer.flush()]
        assert "\ufffd" not in first + "".join(rest)
        assert first + "".join(rest) == text


def test_decode_window_stays_bounded() -> None:
    seen: list[int] = []

    def decode(ids: list[int]) -> str:
        seen.append(len(ids))
        return "".join("\ufffd" if i == 0 else "ab" for i in ids)  # token 0: a lone byte that never settles

    detokenizer = IncrementalDetokenizer(decode)
    rng = random.Random(7)
    pushed, out = [], []
    for _ in range(3000):
        chunk = [0 if rng.random() < 0.8 else 1] * rng.randint(1, 3)
        pushed += chunk
        out.append(detokenizer.push(chunk))
    out.append(detokenizer.flush())
    assert max(seen) <= 3 * MAX_HELD_TOKENS
    assert "".join(out) == decode(pushed)


def test_a_tokenizer_that_is_not_byte_level_streams_through_its_own_decode() -> None:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models

    from gateway.engine.byte_detokenizer import BytePieces
    raw = RawTokenizer(models.WordLevel({"▁a": 0, "▁b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    raw.decoder = decoders.Metaspace()        # SentencePiece style: "▁" is a space, dropped at the start
    assert BytePieces.build(raw) is None
