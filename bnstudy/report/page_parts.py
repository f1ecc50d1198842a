"""The parts of the report's HTML pages: a self-contained page (style inline, no scripts, no
external files), tables, the answer beside the headline figure, the findings folded by group,
a figure with its caption (or why it was skipped), the accuracy pivot, the summary table and
failed runs, and what was run (one study or several side by side). Names the files of a report
folder, which the page links to."""

from __future__ import annotations

import html
from collections import Counter

import pandas as pd

from bnstudy.report.controls import CONTROLS_TITLE
from bnstudy.report.findings import answer
from bnstudy.report.tables import SUMMARY_NOTE, pivot_note
from bnstudy.report.verdicts import (
    CONTRADICTED,
    DRIFT,
    EQUIVALENT,
    FLAT,
    SUPPORTED,
    Finding,
    FindingGroup,
)

# The report's files besides index.html (bnstudy.store.INDEX_HTML) and the figures.
FINDINGS_MD = "findings.md"
PAIRED_CSV = "paired.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
PIVOT_HEADING = "Test accuracy by batch size, norm and test mode"
VERDICT_CLASSES = {  # verdict prefix -> CSS class of its cell
    SUPPORTED: "yes",
    CONTRADICTED: "no",  # the opposite of the claim holds: neither good nor bad news
    DRIFT: "bad",
    FLAT: "yes",
    EQUIVALENT: "yes",
}


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 16px; line-height: 1.4; margin: 1em auto;
       padding: 0 1em; max-width: 76em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.3em; }
h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.8em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td { white-space: nowrap; }
td.text, .setup td, .findings td { white-space: normal; }
table.findings { width: 100%; table-layout: fixed; }
table.setup { width: 100%; }
.setup th:first-child { width: 10em; background: none; }
.detail, .rule, figcaption, .note { color: #555; font-size: 0.9em; }
.verdict { font-weight: bold; }
.yes { color: #1a7f37; } .no { color: #1d4ed8; } .bad { color: #c00; } .open { color: #666; }
img { max-width: 100%; height: auto; }
figure img { width: 100%; }  /* a one-panel figure as wide as the page, as the others */
figure { margin: 0.5em 0 1.5em; }
.warning { border: 2px solid #c00; background: #fee; padding: 0.5em 1em; font-weight: bold; }
details { margin: 0.3em 0 1em; }
.answer { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.answer .claims { flex: 1 1 26em; } .answer .headline { flex: 1 1 34em; }
.answer li { margin-bottom: 0.4em; }
.completeness { border: 2px solid #b45309; background: #fff7ed; padding: 0.5em 1em; }
summary { cursor: pointer; color: #333; }
@media (max-width: 900px) { table { font-size: 0.8em; } th, td { padding: 2px 4px; } }
"""


def html_table(table: pd.DataFrame, css_class: str) -> str:
    """``table`` as escaped HTML without index, in a box that scrolls sideways when narrow."""
    inner = table.to_html(index=False, border=0, classes=css_class, na_rep="", escape=True)
    return f'<div class="scroll">{inner}</div>'


def html_page(title: str, body: list[str]) -> str:
    """A self-contained HTML page: ``title`` and the ``body`` parts, the style inline."""
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
    )
    return "\n".join([head, f"<h1>{html.escape(title)}</h1>", *body, "</body></html>"]) + "\n"


def _verdict_class(verdict: str) -> str:
    """The CSS class of a verdict (VERDICT_CLASSES by prefix; ``open`` if unresolved)."""
    return next((c for v, c in VERDICT_CLASSES.items() if verdict.startswith(v)), "open")


FINDINGS_HEAD = (
    '<colgroup><col style="width: 16%"><col style="width: 38%"><col style="width: 16%">'
    '<col style="width: 4%"><col style="width: 12%"><col style="width: 14%"></colgroup>'
    "<tr><th>where</th><th>claim</th><th>estimate [95% CI]</th><th>n</th>"
    "<th>p (adjusted)</th><th>verdict</th></tr>"
)


def _finding_row(finding: Finding) -> str:
    """A finding as a table row: where, the claim with its measure and numbers below it, the
    estimate with its interval, n, raw and adjusted p-values, and the verdict coloured by its
    class (primary claims marked)."""
    detail = "; ".join(part for part in (finding.measure, finding.detail, finding.key) if part)
    verdict = _verdict_class(finding.verdict)
    primary = " <b>primary</b>" if finding.primary else ""
    said = finding.verdict
    if verdict == "no" and finding.measure and finding.interval():  # which way it went
        said += f": the opposite, {finding.measure} = {finding.interval().split(' [')[0]}"
    return (
        f"<tr><td>{html.escape(finding.subject)}{primary}</td><td>{html.escape(finding.claim)}"
        f' <span class="detail">({html.escape(detail)})</span></td>'
        f"<td>{html.escape(finding.interval())}</td><td>{finding.n}</td>"
        f'<td class="detail">{html.escape(finding.pvalues())}</td>'
        f'<td class="verdict {verdict}">{html.escape(said)}</td></tr>'
    )


def _group_html(group: FindingGroup, open_: bool = False) -> list[str]:
    """A finding group, folded: its title and verdict tally as the summary, then a table of
    its findings and its notes."""
    return [
        f"<details{' open' if open_ else ''}><summary><b>{html.escape(group.title)}</b> — "
        f"{html.escape(_verdict_tally([group]))}</summary>",
        f'<table class="findings">{FINDINGS_HEAD}',
        *map(_finding_row, group.findings),
        "</table>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in group.notes),
        "</details>",
    ]


def _verdict_tally(groups: list[FindingGroup]) -> str:
    """``N findings: a supported, flat or equivalent, b contradicted, ...``."""
    counts = Counter(_verdict_class(f.verdict) for g in groups for f in g.findings)
    parts = [
        f"{counts['yes']} supported, flat or equivalent",
        f"{counts['no']} contradicted",
        *([f"{counts['bad']} drifting"] if counts["bad"] else []),
        f"{counts['open']} not resolved, not testable or not applicable",
    ]
    return f"{counts.total()} findings: {', '.join(parts)}."


def answer_html(groups: list[FindingGroup], figure: list[str]) -> list[str]:
    """The answer first: the primary claims and where BN breaks and what to use instead
    (:func:`bnstudy.report.findings.answer`), beside the headline ``figure``."""
    lines = answer(groups) or ["No primary claim and no BN recovery to report (see Findings)."]
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return [
        '<section id="answer"><h2>The answer</h2><div class="answer">',
        f'<div class="claims"><ul>{items}</ul></div><div class="headline">',
        *figure,
        "</div></div></section>",
    ]


def findings_html(groups: list[FindingGroup], method: str) -> list[str]:
    """The findings: a tally of the verdicts and how they are decided, then each group folded
    (the controls check first, open when a control drifts), a line naming the groups with
    nothing to test and why, and the rules folded away."""
    tested = sorted((g for g in groups if not g.skipped), key=lambda g: g.title != CONTROLS_TITLE)
    skipped = "; ".join(f"{g.title} ({g.skipped})" for g in groups if g.skipped)
    rules = (f"<dt>{html.escape(g.title)}</dt><dd>{html.escape(g.rule)}</dd>" for g in tested)
    parts = [
        '<section id="findings"><h2>All findings</h2>',
        f"<p>{html.escape(_verdict_tally(tested))} Also as "
        f'<a href="{FINDINGS_MD}">{FINDINGS_MD}</a>; every paired difference is in '
        f'<a href="{PAIRED_CSV}">{PAIRED_CSV}</a>.</p>',
        f'<p class="note">{html.escape(method)}</p>',
    ]
    for group in tested:
        parts += _group_html(group, open_=any(f.verdict == DRIFT for f in group.findings))
    if skipped:
        parts.append(f'<p class="note">Nothing to test: {html.escape(skipped)}.</p>')
    parts += ['<details><summary>How each verdict is decided</summary><dl class="rule">', *rules]
    return [*parts, "</dl></details></section>"]


def figure_html(png: str, heading: str, caption: str, reason: str | None = None) -> list[str]:
    """One figure as a section named after its PNG: heading, image (or why it was skipped,
    ``reason``) and caption."""
    parts = [f'<section id="{png.removesuffix(".png")}"><h2>{html.escape(heading)}</h2>']
    if reason is None:
        parts.append(f'<figure><img src="{png}" alt="{html.escape(heading)}">')
        parts.append(f"<figcaption>{html.escape(caption)}</figcaption>")
        return [*parts, "</figure></section>"]
    parts.append(f"<p>{html.escape(caption)}</p>")
    return [*parts, f"<p>Plot skipped: {html.escape(reason)}.</p></section>"]


def pivot_html(
    pivot: pd.DataFrame, n: int, heading: str = PIVOT_HEADING, section_id: str = "pivot"
) -> list[str]:
    """The accuracy pivot table (:func:`bnstudy.report.tables.accuracy_pivot`) with its heading and
    note, as a section with id ``section_id``."""
    return [
        f'<section id="{section_id}"><h2>{html.escape(heading)}</h2>',
        f"<p>{html.escape(pivot_note(n))}</p>",
        html_table(pivot, "pivot"),
        "</section>",
    ]


def tables_html(table: pd.DataFrame, failures: pd.DataFrame) -> list[str]:
    """The full summary table, folded away, and the failed runs."""
    parts = [
        '<section id="summary"><h2>All cells</h2>',
        f'<p>{html.escape(SUMMARY_NOTE)} Also as <a href="{SUMMARY_CSV}">{SUMMARY_CSV}</a> '
        f'(with more diagnostics) and <a href="{SUMMARY_MD}">{SUMMARY_MD}</a>.</p>',
        f"<details><summary>The summary table ({len(table)} rows: every norm × batch × test "
        "setting)</summary>",
        html_table(table, "summary"),
        "</details></section>",
    ]
    if not failures.empty:
        parts += ["<h2>Failed runs</h2>", html_table(failures, "failures")]
    return parts


def setups_html(headings: list[str], setups: list[dict[str, str]]) -> list[str]:
    """The "what was run" section: a row per setup heading and a cell per study (under its
    ``headings``, HTML; none for one study), or one cell across them where they all say the
    same."""
    rows = []
    for heading in dict.fromkeys(key for setup in setups for key in setup):
        texts = [html.escape(setup.get(heading, "")) for setup in setups]
        cells = (
            [f"<td{_span(len(texts))}>{texts[0]}</td>"]
            if len(set(texts)) == 1
            else [f"<td>{text}</td>" for text in texts]
        )
        rows.append(f"<tr><th>{html.escape(heading)}</th>{''.join(cells)}</tr>")
    head = ["<tr><th></th>" + "".join(f"<th>{h}</th>" for h in headings) + "</tr>"]
    return [
        '<section id="setup"><h2>What was run</h2><table class="setup">',
        *(head if headings else []),
        *rows,
        "</table></section>",
    ]


def _span(columns: int) -> str:
    """The colspan attribute of a cell across ``columns`` columns (none for one)."""
    return f' colspan="{columns}"' if columns > 1 else ""
