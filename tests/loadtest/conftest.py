"""The HTTP tests' fixtures (a live server, the tiny CPU engine) for the load-test tests."""
from tests.api.conftest import live_server, tiny_engine, tiny_qwen3_dir  # noqa: F401  (fixtures)
