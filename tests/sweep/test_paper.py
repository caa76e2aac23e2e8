"""c2s/sweep/paper.py: the paper's numbers match their printed lines, every comparison holds on them, and the
row keys are the specs' variants; against the paper's text itself where a copy is on this machine."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from c2s.sweep import paper as P
from c2s.sweep.spec import load_spec

NUMBER = re.compile(r"\d+\.\d+")
PAPER_TEXT = Path(os.environ.get("C2S_PAPER_TEXT", "/work/shared/paper/c2s-distillation.txt"))


def numbers(text: str) -> list[float]:
    return [float(x) for x in NUMBER.findall(text)]


@pytest.mark.parametrize("key", ["table3", "table4", "table5", "table6"])
def test_ablation_rows_are_their_printed_lines(key):
    table = P.TABLES[key]
    assert table.columns == ("hIoU", "sIoU", "uIoU") and table.where == "Sec. 4.2"
    for row in table.rows:
        assert numbers(row.quotes[0]) == [row.values[m] for m in table.columns], row.name


def test_table3_numbers_as_printed():
    t3 = P.TABLES["table3"]
    assert [tuple(r.values.values()) for r in t3.rows] == [(11.2, 41.3, 6.4), (38.8, 41.2, 36.6),
                                                           (42.3, 41.9, 42.7)]
    assert P.TABLES["table4"].row("L2 Loss").values == {"hIoU": 17.8, "sIoU": 18.4, "uIoU": 17.3}


def test_backbones_are_table1_coco_stuff_and_table2():
    table = P.TABLES["backbones"]
    for row in table.rows:
        t1, t2 = numbers(row.quotes[0]), numbers(row.quotes[1])
        assert len(t1) == 9 and t1[3:6] == [row.values[m] for m in ("hIoU", "sIoU", "uIoU")], row.name
        assert t2 == [row.values[c] for c in ("params_m", "gflops", "fps")], row.name
    assert table.row("segnext").values["gflops"] == 33.5 and table.row("setr").values["hIoU"] == 44.8


def test_every_claim_holds_on_the_papers_numbers():
    count = 0
    for table in P.TABLES.values():
        for claim in table.claims:
            verdict = P.check_paper(table, claim)
            assert verdict.holds is True, (table.key, claim.text(), verdict)
            count += 1
    assert count == 30


def test_claims_name_rows_metrics_and_ops_that_exist():
    for table in P.TABLES.values():
        keys = {r.key for r in table.rows}
        for claim in table.claims:
            assert claim.op in P.OPS and claim.source in ("text", "table")
            for ref in (claim.left, claim.right):
                owner, key = ref.split(":") if ":" in ref else (table.key, ref)
                assert key in {r.key for r in P.TABLES[owner].rows} or (owner == table.key and key in keys)
            assert claim.metric in table.columns and (claim.right_metric or claim.metric) in table.columns


@pytest.mark.parametrize("key", ["table3", "table4", "table5", "table6"])
def test_row_keys_are_the_specs_variants(key):
    table = P.TABLES[key]
    spec = load_spec(table.sweep)
    assert list(spec.variants) == [r.key for r in table.rows]


def test_backbone_families_are_the_specs_students():
    spec = load_spec("backbones")
    names = next(d.values for d in spec.space if d.key == "model.name")
    assert sorted(n.split("_")[0] for n in names) == sorted(r.key for r in P.TABLES["backbones"].rows)


def test_operators():
    a, b = P.Stat(40.0, 1.0, 3), P.Stat(38.5, 1.0, 3)
    assert P.holds(">", a, b) == P.Verdict(True, 1.5, 2.0, "agrees (within seed spread)")
    assert P.holds(">", b, a).word == "disagrees (within seed spread)"
    assert P.holds(">", P.Stat(45.0, 1.0), b).word == "agrees"
    assert P.holds("≈", a, b).holds is True  # 1.5 <= max(2.0, 2.0)
    assert P.holds("≈", P.Stat(40.0, 3.0), P.Stat(35.0, 2.5)).holds is True  # 5.0 <= spread 5.5
    assert P.holds("≈", P.Stat(40.0), P.Stat(37.9)).holds is False  # 2.1 > 2.0, no spread
    assert P.holds("≫", P.Stat(30.0), P.Stat(20.0)).holds is True and P.holds("≫", P.Stat(29.9), P.Stat(20.0)).word \
        == "disagrees"
    missing = P.holds(">", P.Stat(math.nan), b)
    assert missing.holds is None and missing.word == "no data"
    with pytest.raises(ValueError, match="unknown comparison"):
        P.holds("<", a, b)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=f"no copy of the paper's text at {PAPER_TEXT} "
                    "(set C2S_PAPER_TEXT)")
def test_quotes_are_verbatim_in_the_paper():
    text = PAPER_TEXT.read_text()
    lines = set(text.splitlines())
    for table in P.TABLES.values():
        assert table.key == "backbones" or table.title in text, table.title  # backbones: two tables' rows
        for row in table.rows:
            for quote in row.quotes:
                assert quote in lines, (table.key, quote)
        for claim in table.claims:
            if claim.source == "text":
                for part in claim.says.split(" … "):
                    assert part in text, (table.key, part)
    for setting in P.SETTINGS.values():
        assert setting.says in text, setting.key
    assert P.SETTINGS["bank.size"].value == 24 and P.SETTINGS["loss.tau"].value is None
