"""The model's tokenizer: encoding, the model's own chat template, and incremental detokenization.

Chat templates are rendered here, not through `apply_chat_template`, so that OpenAI-format
messages are normalised once (see `template_message`) and a compiled template is reused across
requests. The Jinja environment matches transformers' (sandboxed, trim_blocks, lstrip_blocks,
loopcontrols, `{% generation %}` blocks, `raise_exception`, `strftime_now`, HF's `tojson`, and
the named special tokens as variables), so a conversation renders to the same string.

Decoding never cleans up spaces: generated text comes back exactly as the model's bytes say.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
import functools
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gateway.engine.byte_detokenizer import ByteDetokenizer, BytePieces

ROLES = ("system", "developer", "user", "assistant", "tool")
_BYTE_PIECES: dict[tuple, BytePieces | None] = {}       # tokenizer.json (path, mtime, size) -> its table
_RENDER_ARGS = frozenset({"messages", "tools", "documents", "add_generation_prompt"})
# A character cut short spans at most 3 bytes, so text still ending in U+FFFD this many tokens
# after it first did is invalid output, emitted as decoded rather than held in an ever wider window.
MAX_HELD_TOKENS = 16


class Tokenizer:
    """A model directory's tokenizer with its chat template and the ids generation stops on."""

    def __init__(self, hf: PreTrainedTokenizerBase, generation_eos_ids: Iterable[int] = ()) -> None:
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{type(hf).__name__} is not backed by the tokenizers library; a fast tokenizer is needed")
        self.hf = hf
        self._backend = backend
        self.vocab_size: int = len(hf)
        self.bos_token_id: int | None = hf.bos_token_id
        self.pad_token_id: int | None = hf.pad_token_id
        eos = set(generation_eos_ids)
        if hf.eos_token_id is not None:
            eos.add(hf.eos_token_id)
        self.eos_token_ids: frozenset[int] = frozenset(eos)
        self._special_tokens: dict[str, str] = dict(hf.special_tokens_map)
        sources = _named_templates(hf.chat_template)
        self._templates: dict[str, jinja2.Template] = {
            name: compile_chat_template(source) for name, source in sources.items()}
        self.supports_tools: bool = any("tools" in template_variables(source) for source in sources.values())

    @classmethod
    def from_dir(cls, path: str | Path) -> "Tokenizer":
        """Load the tokenizer files of a model directory, plus generation_config.json's eos ids if present."""
        path = Path(path)
        hf = AutoTokenizer.from_pretrained(str(path))
        eos: list[int] = []
        generation_config = path / "generation_config.json"
        if generation_config.is_file():
            ids = json.loads(generation_config.read_text(encoding="utf-8")).get("eos_token_id")
            eos = [ids] if isinstance(ids, int) else list(ids or [])
        tokenizer = cls(hf, eos)
        source = path / "tokenizer.json"
        if source.is_file():                         # tables are shared by every load of the same file
            stat = source.stat()
            tokenizer._pieces_key = (str(source.resolve()), stat.st_mtime_ns, stat.st_size)
        return tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def render_chat(self, messages: Sequence[Mapping[str, Any]], tools: list[dict] | None = None,
                    add_generation_prompt: bool = True, **template_kwargs: Any) -> str:
        """The prompt text for OpenAI-format messages (and tools), in the model's own chat template.

        Raises ValueError for messages the API must refuse (unknown role, missing content,
        non-text content parts) and for any error the template raises, with its message.
        """
        if not self._templates:
            raise ValueError("this model has no chat template; use the completions API with a text prompt")
        if clash := _RENDER_ARGS & template_kwargs.keys():
            raise ValueError(f"chat template arguments may not override {sorted(clash)}")
        template = self._templates.get("tool_use") if tools is not None else None
        template = template or self._templates.get("default") or next(iter(self._templates.values()))
        chat = [template_message(message, i) for i, message in enumerate(messages)]
        try:
            return template.render(messages=chat, tools=tools, documents=None,
                                   add_generation_prompt=add_generation_prompt,
                                   **{**self._special_tokens, **template_kwargs})
        except jinja2.TemplateError as err:
            raise ValueError(err.message or str(err)) from err
        except (TypeError, KeyError, IndexError) as err:
            raise ValueError(f"the chat template cannot render these messages: {err}") from err

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], tools: list[dict] | None = None,
                    add_generation_prompt: bool = True, **template_kwargs: Any) -> list[int]:
        # The template writes bos and every other control token itself.
        text = self.render_chat(messages, tools, add_generation_prompt, **template_kwargs)
        return self.encode(text, add_special_tokens=False)

    def detokenizer(self, skip_special_tokens: bool = False) -> "IncrementalDetokenizer | ByteDetokenizer":
        """A streaming detokenizer: a byte table's where it reproduces this tokenizer's decode."""
        if self._byte_pieces is not None:
            return ByteDetokenizer(self._byte_pieces, skip_special_tokens)
        return self._window_detokenizer(skip_special_tokens)

    _pieces_key: tuple | None = None

    @functools.cached_property
    def _byte_pieces(self) -> BytePieces | None:
        """Built at the first stream, not at every load (a second or so for a 150k vocabulary)."""
        if self._pieces_key is None:
            return BytePieces.build(self._backend)
        if self._pieces_key not in _BYTE_PIECES:
            _BYTE_PIECES[self._pieces_key] = BytePieces.build(self._backend)
        return _BYTE_PIECES[self._pieces_key]

    def _window_detokenizer(self, skip_special_tokens: bool) -> "IncrementalDetokenizer":
        return IncrementalDetokenizer(partial(self._backend.decode, skip_special_tokens=skip_special_tokens))


class IncrementalDetokenizer:
    """Text for a growing token sequence, one piece per push, summing to decode(all ids).

    Window invariant (the prefix/read offsets of vLLM and TGI): `_ids` holds only the window,
    ids[:read] the tokens emitted last, whose decode is `_prefix_text`, and ids[read:] those not yet
    emitted. Each push decodes the window and emits what extends past `_prefix_text`, so spaces
    and merges at the boundary come out as in a full decode, at O(window) cost per step.
    The window only moves on where its decode does not end in U+FFFD, i.e. at a character
    boundary, so a piece never holds part of a character (unless MAX_HELD_TOKENS forces out
    bytes that are invalid anyway).
    """

    __slots__ = ("_decode", "_ids", "_read", "_prefix_text", "_unsettled_at")

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._read = 0
        self._prefix_text = ""
        self._unsettled_at: int | None = None  # len(_ids) when its decode first failed to settle

    def push(self, token_ids: Iterable[int]) -> str:
        """Add generated tokens; return the text they complete (possibly "")."""
        self._ids.extend(token_ids)
        text = self._decode(self._ids)
        if len(text) > len(self._prefix_text) and not text.endswith("\ufffd"):
            return self._advance(text)
        if self._unsettled_at is None:
            self._unsettled_at = len(self._ids)
        elif len(self._ids) - self._unsettled_at > MAX_HELD_TOKENS:
            return self._advance(text)
        return ""

    def flush(self) -> str:
        """The text still held back at the end of generation."""
        if self._read == len(self._ids):
            return ""
        return self._advance(self._decode(self._ids))

    def _advance(self, text: str) -> str:
        piece = text[len(self._prefix_text):]
        del self._ids[:self._read]
        self._read = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        self._unsettled_at = None
        return piece


def template_message(message: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """An OpenAI chat message in the shape chat templates read.

    developer becomes system; content parts join into one string (text parts only, joined by
    newlines); an assistant turn with tool calls and null content gets content ""; tool-call
    arguments given as a JSON object string become a dict (templates serialise them with tojson);
    keys whose value is null are dropped, as transformers does.
    """
    role = message.get("role")
    if role not in ROLES:
        raise ValueError(f"messages[{index}]: unsupported role {role!r}; expected one of {list(ROLES)}")
    out = {key: value for key, value in message.items() if value is not None}
    out["role"] = "system" if role == "developer" else role
    tool_calls = message.get("tool_calls")
    if tool_calls and role == "assistant":
        out["tool_calls"] = [_template_tool_call(call, index) for call in tool_calls]
    content = message.get("content")
    if content is None:
        if not (role == "assistant" and tool_calls):
            raise ValueError(f"messages[{index}]: a {role} message needs content")
        out["content"] = ""
    elif isinstance(content, list):
        out["content"] = "\n".join(_text_part(part, index) for part in content)
    elif not isinstance(content, str):
        raise ValueError(f"messages[{index}]: content must be a string or a list of text parts")
    return out


def _text_part(part: Any, index: int) -> str:
    if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        raise ValueError(f"messages[{index}]: content part {kind!r} is not supported; only text parts are")
    return part["text"]


def _template_tool_call(call: Any, index: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError(f"messages[{index}]: each tool call needs function.name")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            arguments = parsed
    return {**call, "function": {**function, "arguments": arguments if arguments is not None else {}}}


def _named_templates(chat_template: str | dict | list | None) -> dict[str, str]:
    if not chat_template:
        return {}
    if isinstance(chat_template, str):
        return {"default": chat_template}
    if isinstance(chat_template, list):  # tokenizer_config's [{"name": ..., "template": ...}] form
        return {entry["name"]: entry["template"] for entry in chat_template}
    return dict(chat_template)


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; it renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace()` that refuses underscore names, which could reach interpreter internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # Namespace's signature: `self` may be a key
        self, attrs = args[0], dict(*args[1:], **kwargs)
        for name in attrs:
            _TemplateNamespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attribute {name!r}")


class _TemplateDict:
    """`dict(...)` and `dict.fromkeys(...)` for templates, without exposing the dict type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any) -> dict:
        return dict.fromkeys(*args)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # transformers' tojson: no HTML escaping, unicode kept, json.dumps' layout options.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                       namespace=_TemplateNamespace, dict=_TemplateDict())
    return env


_ENV = _environment()


@lru_cache(maxsize=64)
def compile_chat_template(source: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateError as err:
        raise ValueError(f"the chat template does not compile: {err}") from err


@lru_cache(maxsize=64)
def template_variables(source: str) -> frozenset[str]:
    """The variables a chat template reads from its caller (e.g. whether it reads `tools`)."""
    return frozenset(jinja2.meta.find_undeclared_variables(_ENV.parse(source)))
