from sdk.backends.base import Backend, ProgramError, TurnResult, Usage
from sdk.backends.openai_compatible import OpenAICompatible
from sdk.backends.radixgate import RadixGate

__all__ = ["Backend", "OpenAICompatible", "ProgramError", "RadixGate", "TurnResult", "Usage"]
