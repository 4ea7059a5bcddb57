"""The one exception a decoder raises for bad input.

Ingest routes it to the dead-letter topic and the API answers it with 422, both
showing the message verbatim, so the message must say what is wrong with the
payload in words an operator can act on.
"""


class DecodeError(ValueError):
    """The payload cannot become model input; `str(error)` is the reason shown to people."""
