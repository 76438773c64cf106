"""Runnable SDK programs: `python -m sdk.examples.<name> --base-url http://127.0.0.1:8000` (add
`--backend openai` for any other OpenAI-compatible endpoint)."""
