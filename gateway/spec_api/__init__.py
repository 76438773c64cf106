"""The upstream side: OpenAI-compatible APIs as Backends, and the Router that spreads requests over
several Backends (upstreams or local engine replicas) with retries, fallback and circuit breaking."""
from __future__ import annotations

from gateway.spec_api.router import Member, Router
from gateway.spec_api.upstream import UpstreamBackend
from gateway.spec_api.upstream_config import PoolConfig


def upstream_router(pool: PoolConfig) -> Router:
    """One UpstreamBackend per configured upstream, behind a Router (also for one: retries, breaker)."""
    members = [Member(u.name, UpstreamBackend(u, pool.router.schema_retries), u.weight, u.max_retries)
               for u in pool.upstreams]
    return Router(members, pool.router)
