"""radixgate's SDK: LLM programs with gen, select, fork and join, run through radixgate (one request
per assistant turn, server-side select scoring) or any OpenAI-compatible endpoint. Depends on
`openai` and `httpx` only."""
from sdk.backends import Backend, OpenAICompatible, ProgramError, RadixGate, TurnResult, Usage
from sdk.primitives import assistant, gen, select, system, user
from sdk.runner import Function, function, set_default_backend
from sdk.state import ProgramState

__all__ = ["Backend", "Function", "OpenAICompatible", "ProgramError", "ProgramState", "RadixGate", "TurnResult",
           "Usage", "assistant", "function", "gen", "select", "set_default_backend", "system", "user"]
