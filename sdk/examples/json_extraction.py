"""JSON extraction with a regex: the gen's regular expression holds the reply to one JSON shape,
so it always parses (on radixgate the regex is enforced while decoding; on another endpoint the
reply is checked and asked again).

    python -m sdk.examples.json_extraction --base-url http://127.0.0.1:8000
"""
from __future__ import annotations

import json

from sdk import ProgramState, assistant, function, gen, system, user
from sdk.examples.cli import parse

PERSON = r'\{"name": "[A-Za-z ]{1,16}", "age": [0-9]{1,3}, "city": "[A-Za-z ]{1,16}"\}'
TEXTS = ["Maria Lopez, 34, moved to Lisbon last spring to open a bakery.",
         "At 71, retired engineer Tom Baker still cycles around Oxford every morning."]


@function
def extract_person(s: ProgramState, text: str, max_tokens: int = 64):
    s += system("Extract the person described as JSON with the keys name, age and city.")
    s += user(text)
    s += assistant(gen("person", regex=PERSON, max_tokens=max_tokens))
    return json.loads(s["person"])


def main(argv: list[str] | None = None) -> list[ProgramState]:
    args, backend = parse("Extract JSON records with a regex-constrained gen.", argv,
                          [("--max-tokens", {"type": int, "default": 64})])
    states = extract_person.run_batch([{"text": t, "max_tokens": args.max_tokens} for t in TEXTS], backend)
    for text, state in zip(TEXTS, states):
        print(f"{text}\n  -> {state.check().returned}")
    return states


if __name__ == "__main__":
    main()
