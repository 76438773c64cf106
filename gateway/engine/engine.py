"""The local engine: a step loop in its own thread and the async Backend front the API talks to.

The HTTP event loop never runs model work. `generate` tokenizes in a worker thread, hands the
request to the engine thread through a queue, and awaits Deltas that the engine thread puts on an
asyncio queue with `call_soon_threadsafe`. Cancelling the iterator (a client went away) aborts
the request, which frees its memory at the next step boundary.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import torch

from gateway.engine.constrained import Constraints
from gateway.engine.decode_window import launch_window, runs_ahead
from gateway.engine.gc_tuning import tune_gc
from gateway.engine.program import run_program
from gateway.engine.radix_cache import RadixCache
from gateway.engine.outbox import Mailbox, Outbox
from gateway.engine.outputs import Outputs
from gateway.engine.request import Req, ReqGroup
from gateway.engine.runner import ModelRunner
from gateway.engine.sampler import Sampler, SamplingRow
from gateway.engine.scheduler import Scheduler
from gateway.engine.stats import StepTimings
from gateway.engine.stop import StopStrings
from gateway.engine.tokenizer import Tokenizer
from gateway.engine.tools import ToolCallStream, ToolFormat, tool_grammar
from gateway.engine.transfer import to_device
from gateway.protocol import BackendUnavailable, Delta, GenerateRequest, InvalidRequest, ModelCard, Overloaded
from gateway.structured.constraint import compile_constraint
from gateway.structured.grammar import Grammar
from gateway.structured.matcher import Matcher

log = logging.getLogger(__name__)
T = TypeVar("T")


class Engine:
    def __init__(self, path: str | Path, *, name: str | None = None, device: str = "auto", dtype: str = "auto",
                 kv_slots: int = 16384, max_running: int = 256, chunk_tokens: int = 2048,
                 max_context: int | None = None, radix: bool = True, debug_checks: bool = False,
                 max_waiting: int = 4096, jump_forward: bool = True, attention: str = "auto",
                 cuda_graphs: bool = True, mem_fraction: float = 0.0, random_weights: bool = False,
                 group_prefixes: bool = True, decode_steps: int = 8):
        self.name = name or Path(path).name
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           "cpu" if device == "auto" else device)
        self.tokenizer = Tokenizer.from_dir(path)
        self.tokenizer.detokenizer()                 # its byte table is built here, not at the first request
        self.runner = ModelRunner(path, dev, dtype, kv_slots, max_running, max_context, attention=attention,
                                  cuda_graphs=cuda_graphs, mem_fraction=mem_fraction, random_weights=random_weights,
                                  group_prefixes=group_prefixes and radix)
        self.cache = RadixCache(self.runner.pool, enabled=radix)
        self.scheduler = Scheduler(self.runner.pool, self.runner.req_pool, self.cache, max_running=max_running,
                                   chunk_tokens=chunk_tokens, decode_steps=decode_steps)
        if self.runner.groups_prefixes:
            self.scheduler.min_shared_prefix = 256
        self.sampler = Sampler(self.runner.cfg.vocab_size, dev)
        self.tool_format = ToolFormat.detect(self.tokenizer.hf.chat_template)
        self.constraints = Constraints(self.tokenizer, self.runner.cfg.vocab_size, dev, jump_forward)
        self.debug_checks = debug_checks
        self.max_waiting = max_waiting
        self.timings = StepTimings()
        self.outputs = Outputs(self.tokenizer, self.constraints, self.scheduler)
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._outbox = Outbox()
        self._stop = threading.Event()
        tune_gc()                                    # the loaded model and tables leave the collector's walks
        self._thread = threading.Thread(target=self._loop, name="radixgate-engine", daemon=True)
        self._thread.start()

    # ----- Backend -----------------------------------------------------------------------------

    def models(self) -> list[ModelCard]:
        return [ModelCard(self.name, max_context=self.runner.max_context)]

    async def health(self) -> dict:
        return {"status": "ok" if self._thread.is_alive() else "down", "running": len(self.scheduler.running),
                "waiting": len(self.scheduler.waiting)}

    def stats(self) -> dict[str, float]:
        """Gauges for /metrics, read without stopping the engine (values may be a step old)."""
        pool = self.runner.pool
        return {"queue_depth": len(self.scheduler.waiting), "running": len(self.scheduler.running) +
                len(self.scheduler.prefilling), "kv_used_fraction": 1 - pool.available / (pool.num_slots - 1),
                "radix_hit_rate": self.outputs.cached_prompt_tokens / max(self.outputs.prompt_tokens, 1),
                "radix_cached_slots": self.cache.total_size}

    @property
    def prompt_tokens(self) -> int:
        return self.outputs.prompt_tokens

    @property
    def cached_prompt_tokens(self) -> int:
        return self.outputs.cached_prompt_tokens

    async def abort(self, request_id: str) -> None:
        self._inbox.put(lambda: self._abort(request_id))

    async def generate(self, req: GenerateRequest) -> AsyncIterator[Delta]:
        if req.program is not None:
            async for delta in run_program(self, req):
                yield delta
            return
        if not self._thread.is_alive():
            raise BackendUnavailable("the local engine is not running")
        if len(self.scheduler.waiting) >= self.max_waiting:
            raise Overloaded(f"{len(self.scheduler.waiting)} requests are already waiting; retry shortly", 1.0)
        self.sampler.validate(req.params)
        prompt_ids, grammar = await asyncio.to_thread(self._prepare, req)
        max_new = self._max_new_tokens(req, len(prompt_ids))
        loop = asyncio.get_running_loop()
        box = Mailbox()
        emit = self._outbox.sink(loop, box, lambda: self._inbox.put(lambda: self._abort(req.request_id)))
        group = ReqGroup(req.request_id, len(prompt_ids), emit, open_choices=req.n)
        reqs = [self._make_req(req, group, i, prompt_ids, max_new) for i in range(req.n)]
        for r in reqs:
            r.matcher = Matcher(grammar) if grammar is not None else None
            if req.constraint is not None and req.constraint.kind == "tools":
                r.tool_stream = ToolCallStream(self.tool_format)
        self._inbox.put(lambda: self._add(reqs))
        finished = False
        try:
            while not finished:
                for delta in await box.take():
                    if isinstance(delta, BaseException):
                        raise delta
                    finished = delta.usage is not None
                    yield delta
        finally:
            if not finished:
                self._inbox.put(lambda: self._abort(req.request_id))

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn on the engine thread between two steps and return its result (blocking)."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def task() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._inbox.put(task)
        return done.result(timeout=60)

    def shutdown(self) -> None:
        self._stop.set()
        self._inbox.put(lambda: None)
        self._thread.join(timeout=30)

    # ----- request preparation (caller's thread) -------------------------------------------------

    def _prepare(self, req: GenerateRequest) -> tuple[list[int], Grammar | None]:
        """Tokenize the prompt and compile the constraint (both off the event loop and the step loop)."""
        ids = self._prompt_ids(req)
        if req.constraint is None:
            return ids, None
        if req.constraint.kind == "tools":
            if self.tool_format is None:
                raise InvalidRequest(f"the chat template of {self.name} has no tool-call format", "tools")
            grammar = tool_grammar(self.tool_format, req.constraint.spec)
        else:
            grammar = compile_constraint(req.constraint)
        grammar.to_accept()                        # what ending validly costs, here, not in a step
        self.constraints.masks                     # the token table is built once, here, not in a step
        return ids, grammar

    def _prompt_ids(self, req: GenerateRequest) -> list[int]:
        vocab = self.runner.cfg.vocab_size
        if any(not 0 <= t < vocab for t in req.params.stop_token_ids):
            raise InvalidRequest("stop_token_ids contains ids outside the vocabulary", "stop_token_ids")
        param = "messages" if req.messages is not None else "prompt"
        try:
            if req.prompt_token_ids is not None:
                ids = list(req.prompt_token_ids)
                if any(not 0 <= t < vocab for t in ids):
                    raise InvalidRequest("prompt contains token ids outside the vocabulary", "prompt")
            elif req.messages is not None:
                kwargs = dict(req.chat_template_kwargs)
                generation_prompt = bool(kwargs.pop("add_generation_prompt", True))
                ids = self.tokenizer.encode_chat(req.messages, req.tools, generation_prompt, **kwargs)
            else:
                ids = self.tokenizer.encode(req.prompt, add_special_tokens=True)
        except InvalidRequest:
            raise
        except (ValueError, TypeError, UnicodeError) as err:   # template errors, lone surrogates
            raise InvalidRequest(f"the {param} could not be tokenized: {err}", param) from None
        if not ids:
            raise InvalidRequest("the prompt is empty", param)
        return ids

    def _max_new_tokens(self, req: GenerateRequest, prompt_len: int) -> int:
        limit = min(self.runner.max_context, self.runner.pool.num_slots - 1)
        asked = req.params.max_tokens
        param = "messages" if req.messages is not None else "prompt"
        if prompt_len >= limit or (asked is not None and prompt_len + asked > limit):
            raise InvalidRequest(f"This model's maximum context length is {limit} tokens. However, you requested "
                                 f"{prompt_len + (asked or 0)} tokens ({prompt_len} in the {param}, {asked or 0} in "
                                 f"the completion). Please reduce the length of the {param} or completion.", param)
        return limit - prompt_len if asked is None else asked

    def _make_req(self, req: GenerateRequest, group: ReqGroup, index: int, prompt_ids: list[int], max_new: int) -> Req:
        p = req.params
        stop_ids = frozenset(p.stop_token_ids) | (frozenset() if p.ignore_eos else self.tokenizer.eos_token_ids)
        seed = None if p.seed is None else p.seed + index
        return Req(rid=f"{req.request_id}/{index}", group=group, index=index, namespace=req.namespace,
                   prompt_ids=list(prompt_ids), params=p, max_new_tokens=max_new, stop_ids=stop_ids,
                   detok=self.tokenizer.detokenizer(p.skip_special_tokens), stops=StopStrings(p.stop),
                   generator=self.sampler.generator_for(seed))

    # ----- the engine thread -----------------------------------------------------------------------

    def _add(self, reqs: list[Req]) -> None:
        for r in reqs[1:]:
            r.after = reqs[0]                 # siblings share the prompt: compute it once
        self.outputs.groups[reqs[0].group.request_id] = reqs
        for r in reqs:
            r.runs_ahead = runs_ahead(r)
            if r.max_new_tokens == 0:
                self.outputs.finish(r, "length", "")
            else:
                self.scheduler.add(r)

    def _abort(self, request_id: str) -> None:
        self.outputs.report_deferred()                      # what it generated before the abort comes first
        for r in self.outputs.groups.get(request_id, []):
            if r.finish_reason is None:
                self.scheduler.finish(r, "abort")
                self.outputs.finish(r, "abort", "")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._drain_inbox(block=not self.scheduler.has_work)
                if self.scheduler.has_work:
                    self.step()
            except Exception as exc:  # a bug must not take the server down: fail what is in flight
                log.exception("engine step failed")
                self._fail_all(exc)
            self._outbox.flush()

    def _drain_inbox(self, block: bool) -> None:
        try:
            task = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
            while True:
                task()
                task = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def step(self) -> None:
        """One forward. While the device runs it, the host reports the previous step's output of the
        requests whose reports cannot change what is scheduled (`_deferrable`)."""
        t0 = time.perf_counter()
        batch = self.scheduler.schedule()
        if self.scheduler.ended:
            self.outputs.report_deferred()                  # a request's Deltas stay in order
            for r in self.scheduler.ended:
                self.outputs.finish(r, r.finish_reason, self.outputs.held_text(r)[0])
            self.scheduler.ended.clear()
        if batch is None:
            self.outputs.report_deferred()
            return
        if self.debug_checks:
            self.scheduler.check_integrity(pending=batch)
        t1 = time.perf_counter()
        logits = self.runner.forward(batch)
        sampling = [i for i in range(len(batch.reqs)) if batch.samples(i)] if batch.is_prefill \
            else range(len(batch.reqs))               # every decoding request samples
        reqs = [batch.reqs[i] for i in sampling]
        if len(sampling) < len(batch.reqs):       # a list index would copy from pageable memory: a sync
            logits = logits.index_select(0, to_device(list(sampling), torch.int64, logits.device))
        drawn = self._launch_sampling(batch, reqs, logits) if reqs else None
        self.scheduler.commit(batch)
        t2 = time.perf_counter()
        self.outputs.report_deferred()
        t3 = time.perf_counter()
        out = drawn() if drawn is not None else None
        t4 = time.perf_counter()
        for j, r in enumerate(reqs):
            if batch.is_prefill:
                self.scheduler.promote(r)
            if batch.steps > 1:
                self.outputs.append_window(r, out[j])
            else:
                self.outputs.append(r, out, j)
        if not self.scheduler.has_work:
            self.outputs.report_deferred()
        if self.debug_checks:
            self.scheduler.check_integrity()
        self.timings.add(batch.is_prefill, len(batch.reqs), batch.steps, schedule=t1 - t0, forward=t2 - t1 + t4 - t3,
                         finish=t3 - t2 + time.perf_counter() - t4)

    @torch.inference_mode()             # the logits are the runner's inference tensors, sampled in place
    def _launch_sampling(self, batch, reqs: list[Req], logits: torch.Tensor):
        rows = [SamplingRow(r.params, r.prompt_ids, r.output_ids, r.generator) for r in reqs]
        if batch.steps > 1:
            return launch_window(self.runner, self.sampler, batch, rows, logits)
        return self.sampler.launch(logits, rows, self.constraints.bitmask([r.matcher for r in reqs]))

    def _fail_all(self, exc: Exception) -> None:
        self.outputs.deferred.clear()
        for reqs in list(self.outputs.groups.values()):
            for r in reqs:
                if r.finish_reason is None:
                    self.scheduler.finish(r, "abort")
            reqs[0].group.emit(exc)
        self.outputs.groups.clear()
        self.scheduler.reclaim()
