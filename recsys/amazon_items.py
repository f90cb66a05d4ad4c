"""What Amazon Personalize's Items dataset is given of a poll: one textual field.

Amazon's Items dataset declares at most one textual field; the local engine reads five
(QUESTION, OPTIONS, DESCRIPTION, OPTION_DESCRIPTIONS, COMMENTS). Amazon is given them
as one, ``POLL_TEXT`` (:data:`recsys.schemas.AMAZON_ITEMS`), the same way on every path
(live PutItems forwarding, ``hunch personalize export-items``):

- the parts in :data:`POLL_TEXT_PARTS` order, the question first and the comments last,
  each cleaned as the local engine cleans text (markup and runs of whitespace to one
  space) and joined by one space: the text the local encoder reads (which joins the
  parts with whitespace and cleans the whole); Amazon folds whitespace too, so any
  separator would end as one space;
- the whole cut at Amazon's limit from its end: 20,000 characters, 7,000 when the text
  is Chinese or Japanese (:func:`chinese_or_japanese`: at least half the letters of its
  first 20,000 characters are Han ideographs or kana; Amazon takes an item's text in one
  language and truncates past the limit itself, so a cut here only decides what the
  export reports). The end holds the least telling parts, so the cut takes the comments
  first, then the option descriptions, the description, the options and last the
  question; PutItems cuts the same way again when a record's properties JSON would pass
  its 32,000 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.datasets import clean_text
from recsys.schemas import (
    AMAZON_ITEMS,
    AMAZON_MAX_TEXTUAL_LENGTH_CHINESE_JAPANESE,
    MAX_TEXTUAL_LENGTH,
    POLL_TEXT,
    check_amazon_quotas,
    load_schema,
    schema_path,
    write_dataset,
)

# The most telling first: a cut from the end of the text takes the comments first.
POLL_TEXT_PARTS: tuple[str, ...] = (
    "QUESTION", "OPTIONS", "DESCRIPTION", "OPTION_DESCRIPTIONS", "COMMENTS",
)


# Han ideographs (CJK Unified Ideographs, extensions A to H, compatibility ideographs)
# and kana (hiragana, katakana, their phonetic extensions, halfwidth katakana).
_HAN_OR_KANA = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff66-\uff9f\U00020000-\U0003134f]")


def chinese_or_japanese(text: str) -> bool:
    """Whether Amazon's 7,000-character limit for Chinese and Japanese applies to
    ``text``: at least half the letters of its first 20,000 characters (what Amazon
    would keep of another language) are Han ideographs or kana. Amazon asks for one
    language an item; a poll in English quoting a name in kanji keeps its 20,000."""
    head = text[:MAX_TEXTUAL_LENGTH]
    letters = sum(1 for c in head if c.isalpha())
    return letters > 0 and 2 * len(_HAN_OR_KANA.findall(head)) >= letters


def textual_limit(text: str) -> int:
    """How many characters of ``text`` Amazon keeps in a textual field."""
    return (AMAZON_MAX_TEXTUAL_LENGTH_CHINESE_JAPANESE if chinese_or_japanese(text)
            else MAX_TEXTUAL_LENGTH)


def poll_text(record: Mapping[str, Any], limit: int | None = None) -> str | None:
    """A poll's text fields as Amazon's one textual field, at most ``limit`` characters
    (by default Amazon's limit for its language, :func:`textual_limit`; None when the
    poll has no text)."""
    text = joined_text(record)
    return cut_text(text, textual_limit(text) if limit is None else limit) or None


def joined_text(record: Mapping[str, Any]) -> str:
    """A poll's text fields, each cleaned, joined in POLL_TEXT_PARTS order (uncut)."""
    parts = (clean_text(str(record[name])) for name in POLL_TEXT_PARTS if record.get(name))
    return " ".join(part for part in parts if part)


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters from its end (its least telling parts)."""
    return text[:limit]


def amazon_item(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored poll as Amazon's Items dataset takes it: AMAZON_ITEMS' fields only, the
    text fields joined in POLL_TEXT; empty fields left out."""
    item = {name: record.get(name) for name in AMAZON_ITEMS.names if name != POLL_TEXT}
    item[POLL_TEXT] = poll_text(record)
    return {name: value for name, value in item.items() if value is not None and value != ""}


def amazon_schema_notice(directory: Path) -> str | None:
    """What to tell an operator sending Amazon the items of ``directory`` whose own
    items.schema.json declares several textual fields (None otherwise): the local
    engine reads them all, Amazon's Items dataset declares one."""
    path = schema_path(directory, "items")
    if not path.exists():
        return None
    textual = [f.name for f in load_schema(directory, "items").fields if f.textual]
    if len(textual) <= 1:
        return None
    sent = [name for name in textual if name in POLL_TEXT_PARTS]
    left = [name for name in textual if name not in POLL_TEXT_PARTS]
    return (f"{path} declares {len(textual)} textual fields ({', '.join(textual)}); "
            "Amazon Personalize's Items dataset takes 1. The local engine reads them all; "
            f"Amazon is sent {', '.join(sent) or 'none of them'} joined as {POLL_TEXT}"
            + (f" ({', '.join(left)} not sent)" if left else "")
            + ". Create Amazon's Items dataset from the items.schema.json that `hunch "
              "personalize export-items DIRECTORY` writes, not from this file.")


@dataclass
class AmazonItemsExport:
    path: Path
    polls: int
    cut: int  # polls whose text passed Amazon's limit (and was cut there)

    def describe(self) -> str:
        cut = (f"; the text of {self.cut:,} reached {MAX_TEXTUAL_LENGTH:,} characters "
               f"({AMAZON_MAX_TEXTUAL_LENGTH_CHINESE_JAPANESE:,} in Chinese or Japanese) "
               "and was cut there, comments first" if self.cut else "")
        return (f"wrote {self.polls:,} polls to {self.path} and its items.schema.json "
                f"(Amazon's Items dataset, one textual field {POLL_TEXT}){cut}")


def export_amazon_items(records: Iterable[Mapping[str, Any]],
                        directory: Path) -> AmazonItemsExport:
    """Write ``directory``/items.csv and items.schema.json for Amazon's Items dataset
    import (AMAZON_ITEMS), all or nothing (see :func:`recsys.schemas.write_dataset`)."""
    check_amazon_quotas(AMAZON_ITEMS)  # a schema Amazon would refuse is never written
    export = AmazonItemsExport(Path(directory) / "items.csv", 0, 0)

    def rows() -> Iterator[list[Any]]:
        for record in records:
            item = amazon_item(record)
            export.polls += 1
            export.cut += len(joined_text(record)) > len(item.get(POLL_TEXT, ""))
            yield [item.get(name, "") for name in AMAZON_ITEMS.names]

    write_dataset(Path(directory), AMAZON_ITEMS, AMAZON_ITEMS.names, rows())
    return export

