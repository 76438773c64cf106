"""Synthetic English-looking text of a given length, from a seed: common short words, each about one
token in the Llama 3 and Qwen tokenizers, so a length in words is close to a length in tokens."""
from __future__ import annotations

import random

WORDS = """the of and to in is was for on that with as by at from his her an which are were be this it
had have has not or but one all their they its also after first new two more other city time when year
who into most people some state over world such many these only then may would about than three where
made water part between during later through each under same house river school called known used
early long north south east west small large great high old young life work game war team music film
book story land light power center line family name number group area place form point case system
market island church night field order road road region field court club show model side land hall
army song art bank body child color law mind money plan rule seat star wall wind word""".split()
NAMES = """Avalon Brixton Corvel Dunmore Elsworth Farrow Galen Hartwell Ismere Jorvik Kestrel Lindow
Marlow Norcross Oakridge Penrith Quarry Redhill Selby Thorne Ulster Vantor Westfall Yarrow Zenith""".split()


def words(rng: random.Random, n: int) -> str:
    """`n` words in sentences of 8 to 20 words."""
    out: list[str] = []
    while len(out) < n:
        sentence = [rng.choice(WORDS) for _ in range(min(rng.randint(8, 20), n - len(out)))]
        sentence[0] = sentence[0].capitalize()
        sentence[-1] += "."
        out += sentence
    return " ".join(out)


def name(rng: random.Random) -> str:
    return rng.choice(NAMES)


def around(rng: random.Random, n: int, spread: float = 0.25) -> int:
    """A length near `n` (uniform within +-spread)."""
    return max(1, round(n * rng.uniform(1 - spread, 1 + spread)))
