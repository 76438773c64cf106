"""Synthetic versions of the SGLang evaluation workloads, deterministic from a seed (no downloads).
See base.py for what a session is."""
from __future__ import annotations

from loadtest.workloads.agent import REACT
from loadtest.workloads.base import Call, Options, Session, Workload
from loadtest.workloads.branching import JUDGE, TREE_OF_THOUGHT
from loadtest.workloads.chat import CHAT_LONG, CHAT_SHORT
from loadtest.workloads.extraction import JSON_EXTRACTION
from loadtest.workloads.fewshot import HELLASWAG, MMLU
from loadtest.workloads.shared_prefix import SHARED_PREFIX

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    MMLU, HELLASWAG, REACT, TREE_OF_THOUGHT, JSON_EXTRACTION, CHAT_SHORT, CHAT_LONG, JUDGE, SHARED_PREFIX)}

__all__ = ["WORKLOADS", "Call", "Options", "Session", "Workload"]
