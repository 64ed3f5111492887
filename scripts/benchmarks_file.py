"""Write one section of BENCHMARKS.md between its markers, leaving the others alone."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(name: str, body: str, reproduce: str | None = None) -> None:
    """Replace (or append) the text between ``<!-- name -->`` and ``<!-- /name -->``; with
    ``reproduce`` (a command), the section ends with a line saying how to reproduce it."""
    if reproduce is not None:
        body = f"{body.rstrip()}\n\nReproduce: `{reproduce}`"
    block = f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    BENCHMARKS.write_text(text)
