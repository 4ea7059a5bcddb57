"""Payload bytes -> pixels or features; pipeline/inputs.py names what each model takes."""

from pipeline.decode.errors import DecodeError

__all__ = ["DecodeError"]
