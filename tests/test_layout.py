"""docs/layout.md shows the house as it is: every package and top-level module is named."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_and_top_level_module_is_in_the_layout():
    layout = (ROOT / "docs" / "layout.md").read_text()
    package = ROOT / "regal_torch"
    named = [f"regal_torch/{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()]
    named += [f"regal_torch/{p.name}" for p in package.glob("*.py") if p.name != "__init__.py"]
    missing = [name for name in sorted(named) if name not in layout]
    assert not missing, f"docs/layout.md does not show {missing}"
    shown = {word for word in layout.split() if word.startswith("regal_torch/")}
    gone = [name for name in sorted(shown) if not (ROOT / name).exists()]
    assert not gone, f"docs/layout.md shows {gone}, which are not in the code"
