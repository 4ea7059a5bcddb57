"""The one exception a decoder raises for bad input.

Ingest routes it to the dead-letter topic and the API answers it with 422, both
showing the message verbatim, so the message must say what is wrong with the
payload in words an operator can act on.
"""

import re

# What a library's message may carry that means nothing to a reader: the repr of the buffer it
# read from ("cannot identify image file <_io.BytesIO object at 0x7f…>").
_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def without_object_reprs(text: str) -> str:
    return _OBJECT_REPR.sub("", text)


class DecodeError(ValueError):
    """The payload cannot become model input; `str(error)` is the reason shown to people (in
    a dead letter's header and a 422 alike), so object reprs are dropped from it here."""

    def __init__(self, reason: str) -> None:
        super().__init__(without_object_reprs(reason))
