"""Payload bytes -> model input arrays, with one error type for everything undecodable."""

from pipeline.decode.errors import DecodeError
from pipeline.decode.registry import DECODERS, INPUT_SHAPES, decode

__all__ = ["DECODERS", "INPUT_SHAPES", "DecodeError", "decode"]
