"""Text from files (file and folder names, class names, column names) made safe to show on a terminal or in a
one-line message.

A file name may hold ESC sequences that clear the screen or retitle the terminal, a newline that forges a second
`error:` line, bidirectional overrides that reorder what is shown, or bytes that are not UTF-8 (Python decodes
those to lone surrogates). `safe_display` escapes every such character and leaves the rest as it is.
"""

from __future__ import annotations

import unicodedata

# Unicode categories never shown raw: controls (C0, DEL, C1), format characters (bidi overrides, zero-width
# joiners), surrogates (undecodable bytes), private use and unassigned code points, line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, decoded with surrogateescape: show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe_display(text: object, max_chars: int | None = None) -> str:
    """`text` (str() of it) with control, format, separator, surrogate, private-use and unassigned characters
    escaped as `\\xNN`, `\\uNNNN` or `\\n`, `\\r`, `\\t`; optionally cut to `max_chars` characters (before escaping)
    with "..." appended. Printable text, non-ASCII letters included, is unchanged.

    Example: `safe_display("a\\x1b[2Jb\\nc")` → `'a\\\\x1b[2Jb\\\\nc'` (shown as `a\\x1b[2Jb\\nc`).
    """
    text = str(text)
    cut = max_chars is not None and len(text) > max_chars
    if cut:
        text = text[:max_chars]
    if not text.isprintable() or any("\ud800" <= c <= "\udfff" for c in text):
        text = "".join(_escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text)
    return text + "..." if cut else text
