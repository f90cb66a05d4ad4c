"""The rules a cell or a client's value follows wherever it enters: numbers as CSV
writers write them, ids, times. Callers phrase the messages (the API says "send", a
file's checks say "write")."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# --- numbers ------------------------------------------------------------------------
# Numbers as CSV writers write them: ASCII digits, a sign, a decimal point, an exponent.
# Python's int() and float() also take "1_704_080_658" and other scripts' digits, which
# no exporter writes: such a cell is more likely a mistake than a number.
INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
# No field's integer is longer than this (int() refuses 4,301 digits).
MAX_INTEGER_CHARS = 40


def parse_integer(raw: str) -> int | None:
    """``raw`` as an integer, or None: digits 0-9, or a number with no fraction
    ("1700000000.0", as spreadsheets write integers; "1.7e9")."""
    if len(raw) > MAX_INTEGER_CHARS:
        return None
    if INTEGER.fullmatch(raw):
        return int(raw)
    if NUMBER.fullmatch(raw):
        as_float = float(raw)
        if as_float.is_integer():  # not "1e999", which is infinite
            return int(as_float)
    return None


# --- times --------------------------------------------------------------------------
# Epoch seconds of 0001-01-01 and 9999-12-31T23:59:59Z: what datetime can show. Anything
# outside is not a time (1e19 overflowed SQLite's INTEGER and failed as a server error).
MIN_TIMESTAMP = -62_135_596_800
MAX_TIMESTAMP = 253_402_300_799

# --- ids ----------------------------------------------------------------------------
MAX_ID_LENGTH = 256  # Personalize's limit on USER_ID, ITEM_ID, RECOMMENDATION_ID
# Characters that make one id read as another in every tool that shows it (bidirectional
# overrides and isolates: U+202E reverses the rest) or two ids look alike (zero-width
# space, BOM, line and paragraph separators). Not the format characters real names and
# emoji need: U+200C (Persian, Indic), U+200D (emoji), U+200E/U+200F (Hebrew, Arabic),
# the soft hyphen, emoji tag characters (flags).
DECEPTIVE_CHARACTERS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                                 "\u200b\ufeff\u2028\u2029")
# Every character refused_characters may refuse (a superset: Cc is exactly C0, DEL and
# C1; Cs the surrogates), so that a value holding none is passed without a loop.
_SUSPECT_CLASS = "\x00-\x1f\x7f-\x9f\ud800-\udfff" + "".join(sorted(DECEPTIVE_CHARACTERS))
_SUSPECT = re.compile(f"[{_SUSPECT_CLASS}]")
# A value with no suspect character and no surrounding whitespace (\s is str.isspace's
# set, the one str.strip() strips).
_PLAIN = re.compile(rf"[^\s{_SUSPECT_CLASS}](?:[^{_SUSPECT_CLASS}]*[^\s{_SUSPECT_CLASS}])?")
# Why refused_characters refuses a character.
INVISIBLE = "invisible"  # one of DECEPTIVE_CHARACTERS
CONTROL = "control"  # C0, DEL, C1 (NUL and escapes break logs and CSV tools)
SURROGATE = "surrogate"  # a lone surrogate ("\ud800") cannot be stored as UTF-8


def plain(value: str) -> bool:
    """Whether ``value`` is neither :func:`padded` nor holds any character
    :func:`refused_characters` may refuse, decided in one regex pass in C (an import
    checks millions of ids). False says only "look closer"."""
    return _PLAIN.fullmatch(value) is not None


def padded(value: str) -> bool:
    """Whether ``value`` starts or ends with whitespace: "u1 " is another user than
    "u1" (and passed the follow-yourself check)."""
    return value != value.strip()


def refused_characters(value: str, *, allow_whitespace: bool = False,
                       ) -> Iterator[tuple[int, str, str]]:
    """(position, character, why) of each character of ``value`` that no id may hold,
    in order; ``why`` is :data:`INVISIBLE`, :data:`CONTROL` or :data:`SURROGATE`.
    ``allow_whitespace`` lets tab, newline and the like through (free text folds them
    into spaces)."""
    if not _SUSPECT.search(value):
        return  # nearly every value: one regex pass in C, not a Python loop per character
    for i, char in enumerate(value):
        if char in DECEPTIVE_CHARACTERS:
            yield i, char, INVISIBLE
            continue
        category = unicodedata.category(char)
        if category == "Cc" and not (allow_whitespace and char.isspace()):
            yield i, char, CONTROL
        elif category == "Cs":
            yield i, char, SURROGATE


# --- messages -----------------------------------------------------------------------
# Echoed input in error messages is cut to this many characters: a 60 KB id must not come
# back in the response (nor fill logs).
MAX_ECHO_CHARS = 60


def echo(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """``value`` as a short, printable, quoted string for an error message (repr escapes
    lone surrogates, so the message itself can always be encoded as UTF-8)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)
