"""paper_figures.summary: every text that reaches summary.html is escaped (a cell, header, note or
name holding markup shows as text), and the page keeps its tables, colours and structure."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd

from paper_figures.claims import FAILS, HOLDS
from paper_figures.metrics import RunData
from paper_figures.summary import Tables, page, write

SCRIPT = "<script>alert('x')</script>"


def _tables(evil: str = SCRIPT) -> Tables:
    table = pd.DataFrame({"model": [evil, "vhe_deconv"], f"bound {evil}": [-90.5, None]})
    claims = pd.DataFrame({"claim": [evil, "VHE beats NS"], "verdict": [HOLDS, FAILS]})
    return Tables(
        objectives=table,
        objectives_note=f"note {evil}",
        classification=table,
        classification_note=evil,
        headline=evil,
        headline_reason=evil,
        claims=claims,
        structured=table,
        training=table,
        learning_curves=table,
        learning_curves_note=evil,
        seeds=table,
        seeds_note=evil,
    )


class _Tags(HTMLParser):
    """Collects the start tags of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def _run(tmp_path, evil: str = SCRIPT) -> RunData:
    run_dir = tmp_path / "results" / "run"
    run_dir.mkdir(parents=True)
    other = {"check": evil, f"key{evil}": 1.0}
    return RunData(run_dir=run_dir, models={}, raw={f"gap{evil}": other})


def test_markup_in_cells_headers_notes_and_names_is_escaped(tmp_path):
    html = page(_run(tmp_path), _tables())
    assert "<script" not in html  # no live script anywhere
    assert "&lt;script&gt;alert(" in html  # ... but shown as text
    parser = _Tags()
    parser.feed(html)
    assert "script" not in parser.tags
    # every table of the page still renders as a table, with its cells as text
    assert parser.tags.count("table") == 8 and html.count("&lt;script&gt;") >= 14


def test_claims_keep_their_verdict_colours(tmp_path):
    html = page(_run(tmp_path), _tables())
    styles = re.findall(r"#T_claims_row(\d)_col1 \{\s*color: (#\w+);", html)
    assert styles == [("0", "#070"), ("1", "#a00")]
    assert f">{HOLDS}<" in html and f">{FAILS}<" in html


def test_written_page_is_escaped_and_inside_the_run(tmp_path):
    run = _run(tmp_path, evil="<img src=x onerror=alert(1)>")
    write(run, _tables("<img src=x onerror=alert(1)>"))
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["results/run/summary.html", "results/run/summary.md"]
    html = (run.run_dir / "summary.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_seeds_section_only_with_replicates(tmp_path):
    from paper_figures.summary import markdown

    md = markdown(_run(tmp_path), _tables("x"))
    assert "### Across training seeds" in md
    plain = Tables(**{**_tables("x").__dict__, "seeds": pd.DataFrame(columns=["model"])})
    assert "Across training seeds" not in markdown(_run(tmp_path / "plain"), plain)
    assert "Across training seeds" not in page(_run(tmp_path / "plain2"), plain)
