"""The paper's numbers as data, and the comparisons it draws as predicates over a table's rows.

Source: "CLIP-to-Seg Distillation for Inductive Zero-Shot Semantic Segmentation" (anonymous ICLR submission).
Our copy of the paper is its text, which has no page breaks, so each number is placed by section and table;
each row keeps the printed line verbatim (``quotes``, tab-separated as extracted) and each comparison the
sentence it paraphrases (``says``, verbatim; ``…`` marks a cut), so a reader can find them in the PDF.

- :data:`TABLES`: Tables 3-6 (Sec. 4.2: COCO-Stuff, 40k iterations, SegFormer-B4) and the backbones of
  Tables 1-2 (Sec. 4.1; Table 1's COCO-Stuff columns beside Table 2's parameters, GFLOPs and FPS);
- :data:`SETTINGS`: what the paper states about the swept hyperparameters (τ, α, β, the bank size). The
  paper shows no sensitivity study of any of them: only the bank size has a value (24);
- each table's ``claims``: one comparison each (``left op right`` on one metric). ``source`` says whether the
  paper's text states it ("text") or it is only read off the printed table(s) ("table").

Operators, on percentages (sIoU / uIoU / hIoU as the paper and c2s report them):

- ``>``: left's mean is higher;
- ``≈``: |left - right| <= max(:data:`SIMILAR_POINTS`, left's seed std + right's);
- ``≫``: left - right >= :data:`MUCH_POINTS`.

A verdict also says when the difference is within the seeds' spread (std of left + std of right).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SIMILAR_POINTS = 2.0  # "similar" (≈): the paper calls 41.4 vs 41.9 and 41.2 vs 41.3 similar
MUCH_POINTS = 10.0  # "drastically" / "grows over 30%" (≫): the paper's such gaps are 19-30 points
OPS = (">", "≈", "≫")
METRICS = ("hIoU", "sIoU", "uIoU")


@dataclass(frozen=True)
class Row:
    """One printed row: ``key`` is what reproduces it here (a sweep variant, or a backbone family)."""

    key: str
    name: str  # the row's label as printed (citation included)
    values: Mapping[str, float]  # metric or column -> the printed number
    quotes: tuple[str, ...]  # the printed line(s), verbatim


@dataclass(frozen=True)
class Claim:
    """``left op right`` on ``metric`` (``right_metric`` when the paper compares two metrics of one row).

    ``left``/``right`` are row keys of the claim's table, or ``"<table key>:<row key>"`` for another table's.
    """

    left: str
    op: str
    right: str
    metric: str
    says: str  # the sentence it comes from, verbatim ("…" marks a cut); for source "table", what is read
    source: str = "text"  # text: the paper says it; table: read off the printed table(s); c2s: not the paper's
    note: str = ""
    right_metric: str | None = None

    def text(self, label: Callable[[str], str] = str) -> str:
        """``hIoU: a > b``; a comparison of two metrics of one row reads ``a: sIoU ≫ uIoU``. ``label`` names
        a row from its key."""
        left, right = label(self.left), label(self.right)
        if self.right_metric is None:
            return f"{self.metric}: {left} {self.op} {right}"
        if self.left == self.right:
            return f"{left}: {self.metric} {self.op} {self.right_metric}"
        return f"{left} {self.metric} {self.op} {right} {self.right_metric}"


@dataclass(frozen=True)
class Table:
    """A paper table: where it is, the setting it was measured in, its rows and the comparisons drawn on it."""

    key: str  # "table3"
    title: str  # the caption, verbatim
    where: str  # section (our copy has no page numbers)
    setting: str  # dataset, schedule, backbone
    sweep: str  # the spec under sweeps/ that reproduces it
    match: str  # the trials column a row key is matched against: "variant" or "cfg.model.name" (family)
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...] = ()

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"{self.key} has no row {key!r}; rows: {', '.join(r.key for r in self.rows)}")


@dataclass(frozen=True)
class Setting:
    """What the paper states about one swept config key (``value`` None: it gives none)."""

    key: str
    value: float | None
    says: str
    where: str


def _row(key: str, name: str, quote: str, *values: float, columns: tuple[str, ...] = METRICS) -> Row:
    return Row(key, name, dict(zip(columns, values, strict=True)), (quote,))


ABLATION = "COCO-Stuff, 40k iterations, SegFormer-B4, \"all the hyperparameters unchanged\""
BASE, DIST, FULL = "baseline", "baseline + distillation", "baseline + distillation + latent embedding"
T3_DIST = ("By adding the C2S distillation, with the similar sIoU, the uIoU grows over 30% to 36.6%, "
           "resulting in a hIoU of 38.8%")
T3_FULL = ("we can find that the hIoU grows to 42.3% attributing to the large increase of uIoU which grows from "
           "36.6% to 42.7%")

TABLE3 = Table(
    key="table3", title="Table 3: Ablations on proposed modules.", where="Sec. 4.2", setting=ABLATION,
    sweep="ablation_modules", match="variant", columns=METRICS,
    rows=(
        _row(BASE, "baseline", "baseline\t11.2\t41.3\t6.4", 11.2, 41.3, 6.4),
        _row(DIST, "baseline + distillation", "baseline + distillation\t38.8\t41.2\t36.6", 38.8, 41.2, 36.6),
        _row(FULL, "baseline + distillation + latent embedding",
             "baseline + distillation + latent embedding\t42.3\t41.9\t42.7", 42.3, 41.9, 42.7),
    ),
    claims=(
        Claim(BASE, "≫", BASE, "sIoU", "though its sIoU achieves 41.3%, its uIoU is very low with only 6.4%, "
              "leading to only 11.2% hIoU", right_metric="uIoU"),
        Claim(DIST, ">", BASE, "hIoU", T3_DIST),
        Claim(DIST, "≫", BASE, "uIoU", T3_DIST),
        Claim(DIST, "≈", BASE, "sIoU", T3_DIST),
        Claim(FULL, ">", DIST, "hIoU", T3_FULL),
        Claim(FULL, ">", DIST, "uIoU", T3_FULL),
    ),
)

COS, L2, FROSTER, OURS = "Cosine Similarity", "L2 Loss", "Froster", "Our distillation"
TABLE4 = Table(
    key="table4", title="Table 4: Ablations on different distillations.", where="Sec. 4.2", setting=ABLATION,
    sweep="ablation_distill", match="variant", columns=METRICS,
    rows=(
        _row(COS, "Cosine Similarity (Tung & Mori, 2019)", "Cosine Similarity (Tung & Mori, 2019)\t37.6\t41.4\t34.4",
             37.6, 41.4, 34.4),
        _row(L2, "L2 Loss (Wang et al., 2020)", "L2 Loss (Wang et al., 2020)\t17.8\t18.4\t17.3", 17.8, 18.4, 17.3),
        _row(FROSTER, "Froster (Huang et al., 2024)", "Froster (Huang et al., 2024)\t37.2\t41.7\t33.6",
             37.2, 41.7, 33.6),
        _row(OURS, "Our distillation", "Our distillation\t42.3\t41.9\t42.7", 42.3, 41.9, 42.7),
    ),
    claims=(
        Claim(COS, "≈", OURS, "sIoU", "though the sIoU achieves similar performance, the uIoU drops to … 34.4%"),
        Claim(OURS, ">", COS, "uIoU", "though the sIoU achieves similar performance, the uIoU drops to … 34.4%"),
        Claim(OURS, "≫", L2, "sIoU", "both sIoU and uIoU drop drastically"),
        Claim(OURS, "≫", L2, "uIoU", "both sIoU and uIoU drop drastically"),
        Claim(FROSTER, "≈", OURS, "sIoU", "though a similar sIoU can be achieved, its uIoU is 9.1% lower than our "
              "method"),
        Claim(OURS, ">", FROSTER, "uIoU", "though a similar sIoU can be achieved, its uIoU is 9.1% lower than our "
              "method"),
        Claim(OURS, ">", COS, "hIoU", "our distillation has the best hIoU of Table 4", source="table"),
        Claim(COS, "≈", FROSTER, "hIoU", "cosine 37.6 and FROSTER 37.2", source="table"),
        Claim(FROSTER, "≫", L2, "hIoU", "FROSTER 37.2 against L2 17.8", source="table"),
        Claim(L2, ">", "table3:" + BASE, "hIoU", "L2 17.8 (Table 4) against the baseline's 11.2 (Table 3): every "
              "distillation helps", source="table", note="across two sweeps: Table 3's baseline"),
    ),
)

NONE_, LOCAL, GLOBAL, BOTH = "global -, local -", "global -, local ✓", "global ✓, local -", "global ✓, local ✓"
T5_LOCAL = ("Then we use only local CLS tokens to calibrate the latent embeddings and find that the hIoU improves "
            "due to the 6.0% improvements in uIoU")
T5_GLOBAL = "compared with local CLS tokens, the hIoU drops 0.2% due to the performance decreases in uIoU"
TABLE5 = Table(
    key="table5", title="Table 5: Ablations on global and local CLS tokens in latent embedding generation.",
    where="Sec. 4.2", setting=ABLATION, sweep="ablation_calibration", match="variant", columns=METRICS,
    rows=(
        _row(NONE_, "global -, local - (no latent embedding)", "-\t-\t38.8\t41.2\t36.6", 38.8, 41.2, 36.6),
        _row(LOCAL, "global -, local ✓", "-\t✓\t41.9\t41.3\t42.6", 41.9, 41.3, 42.6),
        _row(GLOBAL, "global ✓, local -", "✓\t-\t41.7\t41.4\t42.1", 41.7, 41.4, 42.1),
        _row(BOTH, "global ✓, local ✓", "✓\t✓\t42.3\t41.9\t42.7", 42.3, 41.9, 42.7),
    ),
    claims=(
        Claim(LOCAL, ">", NONE_, "hIoU", T5_LOCAL),
        Claim(LOCAL, ">", NONE_, "uIoU", T5_LOCAL),
        Claim(LOCAL, ">", GLOBAL, "hIoU", T5_GLOBAL),
        Claim(LOCAL, ">", GLOBAL, "uIoU", T5_GLOBAL),
        Claim(BOTH, ">", LOCAL, "hIoU", "global and local CLS tokens together have the best hIoU of Table 5",
              source="table"),
    ),
)

P_NONE, P_MLP, C_NONE, C_MLP = "Prototypes, -", "Prototypes, MLP", "CLS tokens, -", "CLS tokens, MLP"
P_C_T = "Prototypes + CLS tokens, Transformer"
TABLE6 = Table(
    key="table6", title="Table 6: Ablation on the input of latent embedding generation and prototype calibrator.",
    where="Sec. 4.2", setting=ABLATION, sweep="ablation_generator", match="variant", columns=METRICS,
    rows=(
        _row(P_NONE, "Prototypes, -", "Prototypes\t-\t41.0\t41.5\t40.5", 41.0, 41.5, 40.5),
        _row(P_MLP, "Prototypes, MLP", "Prototypes\tMLP\t41.5\t41.3\t41.8", 41.5, 41.3, 41.8),
        _row(C_NONE, "CLS tokens, -", "CLS tokens\t-\t40.2\t41.5\t38.9", 40.2, 41.5, 38.9),
        _row(C_MLP, "CLS tokens, MLP", "CLS tokens\tMLP\t40.9\t41.5\t40.3", 40.9, 41.5, 40.3),
        _row(P_C_T, "Prototypes + CLS tokens, Transformer", "Prototypes + CLS tokens\tTransformer\t42.3\t41.9\t42.7",
             42.3, 41.9, 42.7),
    ),
    claims=(
        Claim(P_C_T, ">", P_NONE, "hIoU", "Compared with our method, we find that the performance drops due to the "
              "uIoU"),
        Claim(P_C_T, ">", P_NONE, "uIoU", "Compared with our method, we find that the performance drops due to the "
              "uIoU"),
        Claim(P_MLP, ">", P_NONE, "uIoU", "compared with using only … the uIoU increases but is still lower than "
              "our method"),
        Claim(P_C_T, ">", P_MLP, "uIoU", "compared with using only … the uIoU increases but is still lower than "
              "our method"),
        Claim(P_C_T, ">", C_NONE, "hIoU", "we directly apply the local CLS token as the prototype and find that the "
              "uIoU drops drastically to 40.2% from 42.3%",
              note="40.2 and 42.3 are the table's hIoU (its uIoU: 38.9 vs 42.7), so the claim is read on hIoU"),
        Claim(C_MLP, ">", C_NONE, "hIoU", "we add the MLP to the local CLS tokens and find the performance "
              "improvements"),
        Claim(P_C_T, ">", P_MLP, "hIoU", "the transformer on prototypes + CLS tokens has the best hIoU of Table 6",
              source="table"),
    ),
)

BACKBONE_COLUMNS = (*METRICS, "params_m", "gflops", "fps")
TABLE2 = Table(
    key="backbones", title="Tables 1-2: the students (Table 1's COCO-Stuff columns, Table 2's efficiency)",
    where="Sec. 4.1", setting="COCO-Stuff, 80k iterations (Table 1); 512x512 input, FPS on one RTX 3090 (Table 2)",
    sweep="backbones", match="cfg.model.name", columns=BACKBONE_COLUMNS,
    rows=(
        Row("segnext", "SegNeXt-B", dict(zip(BACKBONE_COLUMNS, (42.5, 43.1, 41.9, 32.0, 33.5, 40.9), strict=True)),
            ("Ours\tSegNeXt-B (Guo et al., 2022)\t89.3\t91.2\t87.4\t42.5\t43.1\t41.9\t57.6\t53.3\t62.8",
             "Ours+SegNeXt (Guo et al., 2022)\t32.0 M\t33.5\t40.9")),
        Row("setr", "SETR-B", dict(zip(BACKBONE_COLUMNS, (44.8, 43.8, 45.9, 91.0, 109.0, 20.8), strict=True)),
            ("\tSetr-B (Zheng et al., 2021)\t90.7\t92.3\t89.2\t44.8\t43.8\t45.9\t56.3\t52.4\t60.8",
             "Ours+SETR (Zheng et al., 2021)\t91.0 M\t109.0\t20.8")),
        Row("segformer", "SegFormer-B4", dict(zip(BACKBONE_COLUMNS, (43.9, 43.2, 44.7, 65.7, 60.7, 23.0), strict=True)),
            ("\tSegformer-B4 (Xie et al., 2021)\t88.7\t91.3\t86.2\t43.9\t<u>43.2</u>\t<u>44.7</u>\t58.0\t<u>52.6</u>\t64.5",
             "Ours+Segformer (Xie et al., 2021)\t65.7 M\t60.7\t23.0")),
    ),
    claims=(
        Claim("setr", ">", "segformer", "hIoU", "SETR-B 44.8 > SegFormer-B4 43.9 on COCO-Stuff (Table 1)",
              source="table"),
        Claim("segformer", ">", "segnext", "hIoU", "SegFormer-B4 43.9 > SegNeXt-B 42.5 on COCO-Stuff (Table 1)",
              source="table"),
    ),
)

TABLES: dict[str, Table] = {t.key: t for t in (TABLE3, TABLE4, TABLE5, TABLE6, TABLE2)}

ALPHA_BETA = "where α and β are hyperparameters that control the scale of unseen categories"
SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("loss.tau", None, "τ denotes the temperature used for contrastive loss", "Sec. 3.2, Eq. 2"),
    Setting("loss.alpha", None, ALPHA_BETA, "Sec. 3.3"),
    Setting("loss.beta", None, ALPHA_BETA, "Sec. 3.3"),
    Setting("bank.size", 24, "In addition, the size of CLS tokens banks is set as 24.",
            "Sec. 4, Implementation Details"),
)}


# ---------------------------------------------------------------------------------------------- predicates


@dataclass(frozen=True)
class Stat:
    """A row's number: the mean over seeds, its std (ddof=1; NaN for one seed or a printed number)."""

    mean: float
    std: float = math.nan
    seeds: int = 0

    @property
    def spread(self) -> float:
        return 0.0 if math.isnan(self.std) else self.std


@dataclass(frozen=True)
class Verdict:
    holds: bool | None  # None: a side has no number
    delta: float  # left - right
    spread: float  # left's std + right's std
    word: str  # "agrees" / "disagrees" / "no data" (or "holds" / "does not hold" for the paper's own numbers)


def holds(op: str, left: Stat, right: Stat) -> Verdict:
    """Whether ``left op right`` holds (module docstring), with the difference and the seeds' spread."""
    if op not in OPS:
        raise ValueError(f"unknown comparison {op!r}; expected one of {', '.join(OPS)}")
    if math.isnan(left.mean) or math.isnan(right.mean):
        return Verdict(None, math.nan, math.nan, "no data")
    delta, spread = left.mean - right.mean, left.spread + right.spread
    if op == ">":
        ok = delta > 0
    elif op == "≫":
        ok = delta >= MUCH_POINTS
    else:
        ok = abs(delta) <= max(SIMILAR_POINTS, spread)
    word = "agrees" if ok else "disagrees"
    if op != "≈" and spread > 0 and abs(delta) <= spread:
        word += " (within seed spread)"
    return Verdict(ok, delta, spread, word)


def paper_stat(table: Table, ref: str, metric: str) -> Stat:
    """The printed number of row ``ref`` (``"<table>:<row>"`` for another table's) on ``metric``."""
    owner, key = (TABLES[ref.split(":", 1)[0]], ref.split(":", 1)[1]) if ":" in ref else (table, ref)
    return Stat(float(owner.row(key).values[metric]))


def check_paper(table: Table, claim: Claim) -> Verdict:
    """The claim on the paper's own numbers (every claim must hold there: tests/sweep/test_paper.py)."""
    return holds(claim.op, paper_stat(table, claim.left, claim.metric),
                 paper_stat(table, claim.right, claim.right_metric or claim.metric))


__all__ = ["SIMILAR_POINTS", "MUCH_POINTS", "OPS", "METRICS", "Row", "Claim", "Table", "Setting", "TABLES",
           "SETTINGS", "Stat", "Verdict", "holds", "paper_stat", "check_paper"]
