"""Fixtures for the SDK tests: radixgate on the tiny CPU engine, a fake OpenAI upstream answering
programs' forms and field requests (loadtest.program_upstream.FormFiller), radixgate in front of
that fake, and the tiny model in HF transformers as the reference for select scores."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import torch

from gateway.spec_api.upstream_config import PoolConfig, RouterConfig, UpstreamConfig
from loadtest.fake_upstream import FakeUpstream
from loadtest.program_upstream import FormFiller
from loadtest.servers import serve

UPSTREAM_MODEL = "gpt-test"


class Answers(dict):
    """Field values by name for the fake model; any other field gets `default`."""

    def __init__(self, values: dict[str, str], default: str = "Fine."):
        super().__init__(values)
        self.default = default

    def __missing__(self, name: str) -> str:
        return self.default


@pytest.fixture
def local(live_server, tiny_engine) -> str:  # noqa: F811
    """radixgate on the tiny CPU engine: its base URL."""
    return live_server(tiny_engine)


@pytest.fixture
def fake_model() -> Iterator[Callable[[dict[str, str]], tuple[str, str, FakeUpstream]]]:
    """`fake_model(values) -> (fake upstream URL, radixgate-over-the-fake URL, fake)`: a fake OpenAI
    endpoint that fills forms and answers field requests with `values` (an Answers)."""
    from gateway.api.app import create_app
    from gateway.spec_api import upstream_router
    with contextlib.ExitStack() as stack:
        def start(values: dict[str, str]) -> tuple[str, str, FakeUpstream]:
            filler = FormFiller(values if isinstance(values, Answers) else Answers(values))
            fake = FakeUpstream(reply=filler.fake_reply)
            url = stack.enter_context(serve(fake.app)) + "/v1"
            pool = PoolConfig([UpstreamConfig("up0", url, models={UPSTREAM_MODEL: "fake-model"}, timeout=10.0)],
                              RouterConfig(backoff=0.01))
            gateway = stack.enter_context(serve(create_app(upstream_router(pool))))
            return url, gateway, fake
        yield start


@pytest.fixture(scope="session")
def hf_model(tiny_qwen3_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir, dtype=torch.float32).eval()


def reference(model, prefix: list[int], choice: list[int]) -> list[float]:
    """Log-probabilities of choice's tokens after prefix, from one plain forward of prefix + choice."""
    with torch.no_grad():
        logits = model(torch.tensor([prefix + choice])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[len(prefix) - 1 + j, t].item() for j, t in enumerate(choice)]
