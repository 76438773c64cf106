"""JSON extraction with a regex (SGLang's json_decode): a ~400-token document about a city, and the
answer constrained to a fixed JSON layout whose keys and punctuation the decoder may jump over."""
from __future__ import annotations

import random

from loadtest.workloads.base import Chat, Options, Session, Workload, chat_call, regex, spawn
from loadtest.workloads.text import around, name, words

WORD = r'[\w\d\s]{1,16}'
CITY_REGEX = (r'\{\n  "name": "' + WORD + r'",\n  "country": "' + WORD + r'",\n'
              r'  "latitude": [-+]?[0-9]*\.?[0-9]{0,2},\n  "population": [-+]?[0-9]{1,9},\n'
              r'  "top 3 landmarks": \["' + WORD + r'", "' + WORD + r'", "' + WORD + r'"\]\n\}')


def json_extraction(rng: random.Random, n: int, opts: Options) -> list[Session]:
    def session(r: random.Random) -> Session:
        doc = f"{name(r)} is a city. " + words(r, opts.tokens(around(r, 400)))
        chat = Chat().add("user", f"{doc}\n\nExtract the city's name, country, latitude, population and top 3 "
                                  "landmarks as JSON.")
        yield [chat_call(chat, regex(opts, CITY_REGEX, opts.tokens(128)))]
    return [session(spawn(rng)) for _ in range(n)]


JSON_EXTRACTION = Workload("json-extraction", "~400-token document, answer constrained by a regex to a 5-field "
                                              "JSON object (~60 tokens)", json_extraction, structured=True)
