"""From sampled tokens to Deltas: a request's progress (its token ids, grammar, ending) and its report
(text, logprobs, tool calls, the final Delta with usage).

`append` advances a request at once, because the next step is built from it. Reporting waits a step
for requests whose report cannot change what is scheduled (`deferrable`): the engine reports them
while the device runs the next forward. A request with stop strings or tool calls is reported at once,
since only its text can end it there.
"""
from __future__ import annotations

from gateway.engine.constrained import Constraints
from gateway.engine.request import Req
from gateway.engine.sampler import SampleOutput
from gateway.engine.scheduler import Scheduler
from gateway.engine.tokenizer import Tokenizer
from gateway.protocol import Delta, TokenLogprob


class Outputs:
    def __init__(self, tokenizer: Tokenizer, constraints: Constraints, scheduler: Scheduler):
        self.tokenizer, self.constraints, self.scheduler = tokenizer, constraints, scheduler
        self.groups: dict[str, list[Req]] = {}     # the Reqs of each request in flight
        self.deferred: list[tuple] = []            # (req, sampled token, tokens appended, SampleOutput, row, reason)
        self.prompt_tokens = self.cached_prompt_tokens = 0     # over finished requests, for the hit rate

    def logprob(self, out: SampleOutput, j: int, r: Req) -> TokenLogprob | None:
        if not r.params.logprobs:
            return None
        piece = self.tokenizer.decode
        token = out.token_ids[j]
        top = [(t, piece([t]), lp) for t, lp in (out.top_logprobs[j] if out.top_logprobs else [])]
        return TokenLogprob(token, piece([token]), out.logprobs[j], top)

    @staticmethod
    def deferrable(r: Req) -> bool:
        """Whether r's output can be reported a step late: only stop strings and tool calls, found in
        the text, end a request there; every other ending is known from the token ids."""
        return not r.stops.stops and r.tool_stream is None

    def append(self, r: Req, out: SampleOutput, j: int) -> None:
        """Advance r by its sampled token (or the forced stretch or ending that follows it)."""
        token = out.token_ids[j]
        tokens, complete, closed = [token], False, False
        if r.matcher is not None and token not in r.stop_ids:
            tokens, complete, closed = self.constraints.follow(r.matcher, token, r.max_new_tokens - len(r.output_ids))
        r.output_ids.extend(tokens)
        stopped = complete or token in r.stop_ids
        reason = "stop" if stopped else "length" if closed or len(r.output_ids) >= r.max_new_tokens else None
        if not self.deferrable(r):
            self.report(r, token, tokens, self.logprob(out, j, r), reason)
            return
        if reason is not None:
            self.scheduler.finish(r, reason)
        self.deferred.append((r, token, tokens, out, j, reason))

    def append_window(self, r: Req, window: list[int]) -> None:
        """Advance r by the tokens a decode window drew for it (engine.decode_window): up to the first
        stop token, whose K/V past it is dropped. Only deferrable requests run ahead."""
        window = window[:r.max_new_tokens - len(r.output_ids)]
        stop = next((i for i, t in enumerate(window) if t in r.stop_ids), None)
        tokens = window if stop is None else window[:stop + 1]
        r.output_ids.extend(tokens)
        self.scheduler.cut_window(r)
        reason = "stop" if stop is not None else "length" if len(r.output_ids) >= r.max_new_tokens else None
        if reason is not None:
            self.scheduler.finish(r, reason)
        self.deferred.append((r, tokens[0], tokens, None, 0, reason))

    def report_deferred(self) -> None:
        deferred, self.deferred = self.deferred, []
        for r, token, tokens, out, j, reason in deferred:
            self.report(r, token, tokens, self.logprob(out, j, r), reason)

    def report(self, r: Req, token: int, tokens: list[int], logprob: TokenLogprob | None,
                reason: str | None) -> None:
        """Text, logprobs and tool calls of r's new tokens as a Delta; the last one finishes r."""
        sampled = [logprob] if tokens[:1] == [token] else []      # else the ending replaced the sampled token
        logprobs = sampled + [TokenLogprob(t, self.tokenizer.decode([t]), 0.0) for t in tokens[len(sampled):]] \
            if logprob else None
        shown = tokens[:-1] if tokens and tokens[-1] in r.stop_ids else tokens     # a stop token has no text
        text, hit = r.stops.feed(r.detok.push(shown)) if shown else ("", False)
        if hit:
            reason = "stop"
        elif reason is not None:
            tail, hit = self.held_text(r)
            text, reason = text + tail, "stop" if hit else reason
        calls = None
        if r.tool_stream is not None:
            text, calls = r.tool_stream.feed(text)
            if reason is not None:
                rest, more = r.tool_stream.flush()
                text, calls = text + rest, calls + more
                reason = "tool_calls" if r.tool_stream.calls and reason == "stop" else reason
        if reason is None:
            r.group.emit(Delta(r.index, text, tokens, logprobs, tool_calls=calls or None))
            return
        if r.finish_reason is None:
            self.scheduler.finish(r, reason)
        self.finish(r, reason, text, tokens, logprobs, calls)

    @staticmethod
    def held_text(r: Req) -> tuple[str, bool]:
        """At the end: the text held back for a partial character or a possible stop string."""
        tail, hit = r.stops.feed(r.detok.flush())
        return (tail, True) if hit else (tail + r.stops.flush(), False)

    def finish(self, r: Req, reason: str, text: str, tokens: list[int] = (), logprobs: list | None = None,
                calls: list | None = None):
        r.finish_reason = reason
        g = r.group
        g.usage.completion_tokens += len(r.output_ids)
        if r.index == 0:
            g.usage.cached_tokens = r.first_hit or 0
        g.open_choices -= 1
        usage = None
        if g.open_choices == 0:
            g.usage.prompt_tokens = g.prompt_len
            usage = g.usage
            self.prompt_tokens += g.usage.prompt_tokens
            self.cached_prompt_tokens += g.usage.cached_tokens
            self.groups.pop(g.request_id, None)
        g.emit(Delta(r.index, text, list(tokens), logprobs, reason, usage, calls or None))
