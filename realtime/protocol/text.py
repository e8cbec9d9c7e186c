"""Text one player shows to others (chat content, guild and party names): visible, and never reordered.

One rule for every such field (docs/protocol.md §5 and §8):

- Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069) are removed. They make
  text display in another order than it was typed ("gnp.exe" shown for "exe.png"), and a name
  or message has no legitimate need of them; plain right-to-left text needs none.
- Leading and trailing whitespace is trimmed.
- Control characters are refused (tab and newline may be allowed, for chat).
- Text with nothing visible once control and format characters (Unicode Cc and Cf: zero-width
  spaces and joiners, marks, tags), separators and known blank characters are set aside is
  refused: an "empty" name or message that is not empty fools people and moderators alike.
"""

from __future__ import annotations

import re
import unicodedata

_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
# C0 controls other than tab and newline, DEL and C1 controls: invisible, and some terminals
# and log viewers act on them.
_CONTROLS_BUT_TAB_AND_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Categories that never show a glyph of their own: controls, format characters, separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# Letters, symbols and marks that Unicode does not class as invisible but that render as blank
# space: Hangul fillers, the blank Braille pattern, the combining grapheme joiner, Khmer
# inherent vowels. Favourites for "invisible" names.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")


class InvisibleText(ValueError):
    """Text refused by the rule above; the message says why, without echoing the text."""


def _blank(char: str) -> bool:
    code = ord(char)
    return (
        char in _BLANKS
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or unicodedata.category(char) in _INVISIBLE_CATEGORIES
    )


def without_bidi_controls(value: str) -> str:
    return _BIDI_CONTROLS.sub("", value)


def has_visible_character(value: str) -> bool:
    return any(not _blank(char) for char in value)


def visible_text(value: str, *, multiline: bool = False) -> str:
    """`value` without bidirectional controls, trimmed; raises `InvisibleText` if it is empty,
    holds control characters (tab and newline are fine when `multiline`) or shows nothing."""
    value = without_bidi_controls(value).strip()
    if not value:
        raise InvisibleText("must not be empty or only whitespace")
    controls = _CONTROLS_BUT_TAB_AND_NEWLINE if multiline else _CONTROLS
    if controls.search(value):
        allowed = " (tab and newline are fine)" if multiline else ""
        raise InvisibleText(f"must not contain control characters{allowed}")
    if not has_visible_character(value):
        raise InvisibleText("must contain a visible character (not only spaces, zero-width or format characters)")
    return value
