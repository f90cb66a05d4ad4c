"""A CSV file's lines, decoded one at a time, as Excel and other spreadsheets save them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

BARE_CR = re.compile(rb"(?<=\r)(?!\n)")  # just after a CR that no LF follows


class NotUtf8(NamedTuple):
    """Where a file stops being UTF-8: its line, the first byte that is not UTF-8 and
    that byte's position in the line (both from 1)."""

    line: int
    byte: int
    position: int


def utf8_lines(binary: Iterable[bytes], not_utf8: Callable[[NotUtf8], None]) -> Iterator[str]:
    """The lines of a file opened in binary, decoded one at a time, so that a byte that
    is not UTF-8 is reported on its own line (decoded in buffers, one on line 51 was
    reported as an unreadable header, one on line 182 as line 170): ``not_utf8`` is
    told where, and reading stops there. The first line may start with a byte-order
    mark (Excel writes one by default), which is no part of the first column's name."""
    number = 0
    for chunk in binary:
        # A bare CR ends a line too (Excel for Mac's "CSV (Macintosh)"); binary lines end
        # at LF only, so such a file came as one line.
        for raw in BARE_CR.split(chunk) if b"\r" in chunk else (chunk,):
            if not raw:
                continue  # after a file's last CR
            number += 1
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                not_utf8(NotUtf8(number, raw[exc.start], exc.start + 1))
                return
