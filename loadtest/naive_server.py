"""The naive peer: radixgate's HTTP API in front of Hugging Face `transformers` `generate()`, one
request at a time, no prefix cache, no structured decoding (those requests are a 400).

    python -m loadtest.naive_server --model DIR [--port 8001] [--device cuda] [--random-weights]

What the load test compares against is only the generation: the routes, parsing and streaming are
radixgate's own (gateway/api), so the difference is the engine.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import torch

from gateway.protocol import Delta, GenerateRequest, InvalidRequest, ModelCard, Usage


class TransformersBackend:
    """A Backend over `model.generate()`, streaming each token as it comes (a transformers streamer)."""

    def __init__(self, path: str | Path, name: str | None = None, device: str = "auto", dtype: str = "auto",
                 random_weights: bool = False):
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.dtype = {"auto": torch.bfloat16 if self.device.startswith("cuda") else torch.float32,
                      "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # transformers 4.x (>= 4.51, as pyproject allows) names it torch_dtype; 5.x dtype (the old name warns).
        dtype_arg = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": self.dtype}
        if random_weights:
            with torch.device(self.device):
                self.model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), **dtype_arg)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(path, **dtype_arg).to(self.device)
        self.model.eval()
        self.card = ModelCard(name or Path(path).name, max_context=self.model.config.max_position_embeddings)
        self.lock = threading.Lock()            # one generate() at a time: the naive way

    def models(self) -> list[ModelCard]:
        return [self.card]

    async def health(self) -> dict:
        return {"status": "ok"}

    async def abort(self, request_id: str) -> None:
        pass                                    # a disconnect cancels generate() through its stopping criterion

    def input_ids(self, req: GenerateRequest) -> list[int]:
        if req.prompt_token_ids is not None:
            return list(req.prompt_token_ids)
        if req.messages is not None:
            text = self.tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False,
                                                      **req.chat_template_kwargs)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(req.prompt)["input_ids"]

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Delta]:
        if req.constraint is not None or req.program is not None or req.tools or req.n != 1:
            raise InvalidRequest("the transformers peer serves plain generation only (no structured output, "
                                 "programs, tools or n > 1)")
        p = req.params
        ids = self.input_ids(req)
        loop, queue, cancelled = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
        worker = threading.Thread(target=self._run, args=(ids, p, loop, queue, cancelled), daemon=True)
        worker.start()
        out: list[int] = []
        text, finish = "", "length"
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                out.append(item)
                new = self.tokenizer.decode(out, skip_special_tokens=p.skip_special_tokens)
                if item == self.tokenizer.eos_token_id and not p.ignore_eos:
                    finish = "stop"
                if stop := next((s for s in p.stop if s in new), None):
                    new, finish = new[:new.index(stop)], "stop"
                piece, text = new[len(text):], new
                yield Delta(0, piece, [item])
                if finish == "stop":
                    break
            yield Delta(0, finish_reason=finish, usage=Usage(len(ids), len(out)))
        finally:
            cancelled.set()

    def _run(self, ids: list[int], p, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue,
             cancelled: threading.Event) -> None:
        from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        class Stream(BaseStreamer):
            prompt_seen = False

            def put(self, value: torch.Tensor) -> None:
                if not self.prompt_seen:            # generate() puts the prompt first
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    loop.call_soon_threadsafe(queue.put_nowait, token)

            def end(self) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), device=input_ids.device)

        limit = p.max_tokens or max(1, self.card.max_context - len(ids))
        sampling = {"do_sample": False} if p.greedy else {"do_sample": True, "temperature": p.temperature,
                                                          "top_p": p.top_p, "top_k": p.top_k}
        try:
            with self.lock, torch.inference_mode():
                self.model.generate(torch.tensor([ids], device=self.device), max_new_tokens=limit,
                                    min_new_tokens=limit if p.ignore_eos else None, streamer=Stream(),
                                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                                    **sampling)
        except BaseException as err:           # to the request, not a dead thread
            loop.call_soon_threadsafe(queue.put_nowait, err)


def main(argv: list[str] | None = None) -> int:
    from gateway.api.app import create_app
    from gateway.cli import serve_app
    from gateway.config import ServeConfig
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a Hugging Face checkpoint directory")
    ap.add_argument("--served-model-name")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    ap.add_argument("--random-weights", action="store_true", help="initialize weights from the config instead")
    args = ap.parse_args(argv)
    backend = TransformersBackend(args.model, args.served_model_name, args.device, args.dtype, args.random_weights)
    cfg = ServeConfig(host=args.host, port=args.port, drain_timeout=5)
    return serve_app(create_app(backend, cfg), cfg)


if __name__ == "__main__":
    sys.exit(main())
