"""Figures in docs are written by the command that measured them: a marked block of a Markdown file is replaced."""

from __future__ import annotations

from pathlib import Path


def replace_block(doc: Path, name: str, lines: list[str]) -> bool:
    """Replace the text between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` in `doc`.

    Returns False (and writes nothing) when the file or its markers are missing.
    """
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    if not doc.exists() or start not in (text := doc.read_text()) or end not in text:
        return False
    head, tail = text.index(start), text.index(end) + len(end)
    doc.write_text(text[:head] + "\n".join([start, *lines, end]) + text[tail:])
    return True
