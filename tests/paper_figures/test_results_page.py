"""paper_figures.results_page: a finished run's docs/results page, generated from its tables."""

from __future__ import annotations

import json

from paper_figures import make as PF
from paper_figures import results_page as RP
from tests.pipeline.synthetic import make_run


def test_page_holds_the_run_tables_and_provenance(tmp_path):
    rd = make_run(tmp_path)
    PF.make(rd, wandb_mode="disabled")
    (rd / "metrics" / "extra.json").write_text(
        json.dumps(
            {
                "provenance": {
                    "git_commit": "abc1234",
                    "hostname": "node7",
                    "torch": "2.14.1",
                    "date": "2026-12-06T10:00:00+00:00",
                }
            }
        )
    )
    text = RP.page(rd)
    assert "abc1234" in text and "node7" in text and "evaluated 2026-12-06" in text
    for name in RP.TABLE_ORDER:
        table = (rd / "tables" / f"{name}.md").read_text().strip()
        if name in RP.WHEN_NOT_EMPTY:  # the synthetic run has no spatial models: families is empty
            assert table not in text, name
            continue
        assert table in text, name  # the table as written, not retyped
    out = tmp_path / "page.md"
    assert RP.main([str(rd), "--out", str(out)]) == 0 and out.read_text() == text + "\n"


def test_an_unfinished_run_is_refused(tmp_path, capsys):
    (tmp_path / "results" / "x").mkdir(parents=True)
    assert RP.main([str(tmp_path / "results" / "x"), "--out", str(tmp_path / "p.md")]) == 1
    assert "finished run" in capsys.readouterr().err and not (tmp_path / "p.md").exists()
