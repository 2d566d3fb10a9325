"""Text from files (class names of a task file, ...) shown inside Markdown we write (report.md, model cards): it must
read as the literal text it is, never as Markdown structure (a heading, a link, a table cell break) or as HTML (an
`<img onerror=...>` that a viewer would run)."""

from __future__ import annotations

import string
import unicodedata

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# CommonMark: any ASCII punctuation may be backslash-escaped and then stands for itself.
_ESCAPED = {c: "\\" + c for c in string.punctuation if c not in _HTML}


def markdown_text(value) -> str:
    """`str(value)` as inline Markdown that renders as exactly that text: `&`, `<`, `>` as HTML entities (so no tag
    or entity of the value is interpreted), every other ASCII punctuation backslash-escaped (no emphasis, link,
    heading, list, table cell or code span can start), and control and format characters (line breaks, ANSI escape
    sequences, bidirectional overrides) written as visible `\\u....` escapes, so the value stays on its line."""
    out = []
    for char in str(value):
        if char in _HTML:
            out.append(_HTML[char])
        elif char in _ESCAPED:
            out.append(_ESCAPED[char])
        elif unicodedata.category(char)[0] == "C":
            out.append(f"\\\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)
