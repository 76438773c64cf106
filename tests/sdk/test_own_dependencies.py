"""The sdk package imports and runs with its own dependencies only: a separate Python process in
which importing torch, transformers, numpy or anything of gateway fails runs examples (select
scoring, fork and join, streaming) against a radixgate server started by this test process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "gateway", "transformers", "numpy", "tokenizers", "triton", "kernels", "loadtest")

PROGRAM = f"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked: the sdk must not need it")
        return None

sys.meta_path.insert(0, Blocked())
base = sys.argv[1]
from sdk.examples import essay_judge, multi_turn_chat, multiple_choice
states = multiple_choice.main(["--base-url", base])
assert all(s.error is None and "answer" in s.scores for s in states)
judged = essay_judge.main(["--base-url", base, "--max-tokens", "4"])
assert len(judged["judgment"]) == len(essay_judge.DIMENSIONS)
multi_turn_chat.main(["--base-url", base, "--max-tokens", "4"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
assert not loaded, loaded
print("SDK-ONLY-OK")
"""


def test_the_sdk_runs_without_torch_or_gateway(local):
    done = subprocess.run([sys.executable, "-c", PROGRAM, local], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SDK-ONLY-OK" in done.stdout
