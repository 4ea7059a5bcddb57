"""Detect and align: between decoding a photo and embedding its face."""
