"""Triton kernels for the local engine, each beside a plain-torch reference of the same function
(attention_ref holds the attention ones, importable without triton: the torch backend runs them).

This package imports nothing from `gateway`; the engine's attention backends call into it. Every
`*_ref` function is the specification its kernel is tested against.
"""
