"""The command line every example shares: where the server is and which backend talks to it."""
from __future__ import annotations

import argparse

from sdk.backends import OpenAICompatible, RadixGate
from sdk.backends.base import Backend


def parse(description: str, argv: list[str] | None = None,
          extra: list[tuple[str, dict]] = ()) -> tuple[argparse.Namespace, Backend]:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000", help="the server (its /v1 is added if missing)")
    ap.add_argument("--backend", choices=("radixgate", "openai"), default="radixgate",
                    help="radixgate: one request per assistant turn, server-side select scores; "
                         "openai: any OpenAI-compatible endpoint, one request per field")
    ap.add_argument("--model", default=None, help="default: the server's first model")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--select", choices=("enum", "logprobs"), default="enum", help="openai backend: how select chooses")
    for flag, options in extra:
        ap.add_argument(flag, **options)
    args = ap.parse_args(argv)
    if args.backend == "radixgate":
        backend = RadixGate(args.base_url, args.model, args.api_key, temperature=args.temperature)
    else:
        backend = OpenAICompatible(args.base_url, args.model, args.api_key, temperature=args.temperature,
                                   select=args.select)
    return args, backend
