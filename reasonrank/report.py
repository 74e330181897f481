"""One self-contained HTML page comparing a reranked run with its baseline (command: ``reasonrank.report``).

Per query: both lists side by side with relevance grades, rank movements, each passage's text (a few lines,
unfolding on click) with the reranker's evidence highlighted, its explanations (collapsible) and the nDCG@10
change; above them the mean metrics with a paired t-test per metric (``ranx``) and a wins/losses plot. The page
needs no script, stylesheet or font from anywhere: the plot is inline SVG and every piece of input text is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from reasonrank import __version__
from reasonrank.errors import UserError
from reasonrank.evaluation import METRICS, Evaluation, Qrels, evaluate
from reasonrank.io.jsonl import parse_object
from reasonrank.io.runs import read_tagged_run
from reasonrank.io.text import numbered_lines
from reasonrank.types import Query

PLOT_METRIC = "nDCG@10"
SIGNIFICANCE = 0.05  # p-values below this are marked
SUMMARY_CHARS = 60  # explanation characters shown before it is unfolded
TIE = 1e-9  # per-query differences below this are ties (floating-point noise of identical rankings)


@dataclass(frozen=True, slots=True)
class RunFile:
    """A run as it is ranked: each query's (docid, score) pairs by descending score, as trec_eval reads them."""

    path: Path
    tag: str
    ranked: dict[str, list[tuple[str, float]]]

    def scores(self) -> dict[str, dict[str, float]]:
        return {qid: dict(docs) for qid, docs in self.ranked.items()}


@dataclass(frozen=True, slots=True)
class Note:
    """What the reranker said about one document (a line of the ``--explanations`` file)."""

    explanation: str | None
    label: int | None
    model: str
    evidence: tuple[tuple[int, int], ...] = ()  # character offsets into the passage text


def load_run(path: str | Path) -> RunFile:
    run, tag = read_tagged_run(path)
    # sorted() is stable: equal scores keep the file's order.
    ranked = {qid: sorted(docs.items(), key=lambda pair: -pair[1]) for qid, docs in run.items()}
    return RunFile(Path(path), tag, ranked)


def load_explanations(path: str | Path) -> dict[tuple[str, str], Note]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"explanations file {path} does not exist: pass the JSONL written by --explanations")
    notes: dict[tuple[str, str], Note] = {}
    for number, line in numbered_lines(path, "explanations file"):
        if not line.strip():
            continue
        record = parse_object(line, f"{path}:{number}")
        if "qid" not in record or "docid" not in record:
            raise UserError(f"{path}:{number}: an explanation line is a JSON object with 'qid' and 'docid' keys")
        label = record.get("label")
        explanation = record.get("explanation")
        notes[(str(record["qid"]), str(record["docid"]))] = Note(
            explanation if isinstance(explanation, str) else None,
            label if isinstance(label, int) and not isinstance(label, bool) else None,
            str(record.get("model", "")),
            evidence_spans(record.get("evidence") or [], f"{path}:{number}"),
        )
    return notes


def evidence_spans(evidence: object, where: str) -> tuple[tuple[int, int], ...]:
    spans = []
    for span in evidence if isinstance(evidence, list) else [evidence]:
        start, end = (span.get("start"), span.get("end")) if isinstance(span, dict) else (None, None)
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
            raise UserError(f"{where}: evidence is a list of {{\"start\": int, \"end\": int}} character offsets")
        spans.append((start, end))
    return tuple(sorted(spans))


def load_passages(corpus: str | Path, docids: set[str]) -> dict[str, str]:
    """The texts of ``docids`` as the rerankers read them (the corpus' ``contents``, or title and text joined)."""
    from reasonrank.io.corpus import iter_documents

    return {document.docid: document.contents for document in iter_documents(corpus) if document.docid in docids}


# --- page pieces -----------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;
color:#1d2430;background:#fff}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:17px;margin:0 0 6px}
code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#f1f3f6;padding:1px 4px;border-radius:3px}
table{border-collapse:collapse}th,td{padding:3px 8px;text-align:left;vertical-align:top}
th{font-weight:600;border-bottom:2px solid #d5dae1}td{border-bottom:1px solid #eceff3}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
section{border:1px solid #dfe3e8;border-radius:6px;padding:12px 14px;margin:14px 0}
.meta{color:#5b6575;margin:2px 0 10px}
.lists{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,3fr);gap:18px}
.lists.single{grid-template-columns:minmax(0,1fr)}
.lists h3{font-size:13px;margin:0 0 4px;color:#5b6575;text-transform:uppercase;letter-spacing:.04em}
.grade{display:inline-block;min-width:18px;text-align:center;border-radius:3px;font-weight:600;color:#fff}
.g0{background:#9aa3ae}.g1{background:#e0a526}.g2{background:#43a047}.g3{background:#1b5e20}
.unjudged{background:#fff;color:#9aa3ae;border:1px dashed #c4cad2}
.up{color:#1b7e2f;font-weight:600}.down{color:#c62828;font-weight:600}.same,.new{color:#5b6575}
details summary{cursor:pointer;color:#35517a}td details summary{max-width:34em}
details p{margin:4px 0 2px;white-space:pre-wrap;max-width:60em}
details.passage summary{list-style:none;color:#1d2430}details.passage summary::-webkit-details-marker{display:none}
details.passage summary .text{display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}
details.passage[open] summary .text{display:block}
.passage{font-size:13px;max-width:46em}mark{background:#fff1a8;padding:0 1px;border-radius:2px}
.sig{font-weight:600}
.legend span{margin-right:10px}svg text{font:11px system-ui,sans-serif;fill:#3d4755}
"""


def text(value: object) -> str:
    """Every input-derived string goes through here before it reaches the page."""
    return escape(str(value), quote=True)


def grade_mark(grade: int | None) -> str:
    if grade is None:
        return '<span class="grade unjudged" title="not judged">·</span>'
    css = f"g{min(max(grade, 0), 3)}"
    return f'<span class="grade {css}" title="relevance grade {grade}">{grade}</span>'


def movement(before: int | None, after: int) -> str:
    """How far a document moved from its baseline rank: ▲ up, ▼ down."""
    if before is None:
        return '<span class="new" title="not in the baseline list">new</span>'
    delta = before - after
    if delta > 0:
        return f'<span class="up" title="baseline rank {before}">▲{delta}</span>'
    if delta < 0:
        return f'<span class="down" title="baseline rank {before}">▼{-delta}</span>'
    return f'<span class="same" title="baseline rank {before}">=</span>'


def signed(value: float) -> str:
    css = "up" if value > TIE else "down" if value < -TIE else "same"
    return f'<span class="{css}">{value:+.4f}</span>'


def note_html(note: Note | None) -> str:
    if note is None or (not note.explanation and note.label is None):
        return ""
    label = f"label {note.label}" if note.label is not None else ""
    if not note.explanation:
        return text(label)
    # The summary shows the label and the explanation's opening words; the full text unfolds on click.
    opening = " ".join(note.explanation.split())
    opening = opening if len(opening) <= SUMMARY_CHARS else opening[: SUMMARY_CHARS - 1].rstrip() + "…"
    summary = f"<b>{text(label)}</b> {text(opening)}" if label else text(opening)
    return f'<details class="note"><summary>{summary}</summary><p>{text(note.explanation)}</p></details>'


def highlighted(passage: str, spans: Sequence[tuple[int, int]], where: str) -> str:
    """The passage, escaped, with each evidence span in ``<mark>``."""
    if spans and spans[-1][1] > len(passage):
        raise UserError(f"evidence of {where} ends at character {spans[-1][1]} of a {len(passage)}-character "
                        "passage: pass the --corpus the run was made from")
    parts, position = [], 0
    for start, end in spans:
        if start < position:
            continue  # overlapping spans: the first one is marked
        parts.append(f"{text(passage[position:start])}<mark>{text(passage[start:end])}</mark>")
        position = end
    return "".join(parts) + text(passage[position:])


def passage_html(passages: Mapping[str, str], note: Note | None, qid: str, docid: str) -> str:
    """The passage clamped to three lines (the whole of it on click), evidence highlighted."""
    if docid not in passages:
        return ""
    marked = highlighted(passages[docid], note.evidence if note else (), f"{qid}/{docid}")
    return f'<details class="passage"><summary><span class="text">{marked}</span></summary></details>'


def paired_p_value(before: Sequence[float], after: Sequence[float]) -> float | None:
    """Two-sided paired t-test (ranx, on pytrec_eval's per-query values); None where it is undefined."""
    import math

    from ranx.statistical_tests import paired_student_t_test

    if len(before) < 2:
        return None
    p_value, _ = paired_student_t_test(list(before), list(after), max_p=SIGNIFICANCE)
    return None if math.isnan(p_value) else float(p_value)


def wins_losses_svg(deltas: Sequence[tuple[int, str, float]], width: int = 760, height: int = 200) -> str:
    """Bars of the per-query metric change, best first; each bar links to its query's section."""
    left, top, bottom = 46, 10, 10
    plot_w, plot_h = width - left - 8, height - top - bottom
    scale = max(0.1, *(abs(d) for _, _, d in deltas))
    scale = -(-scale // 0.1) * 0.1  # round up to a tenth so the axis labels are round numbers
    zero = top + plot_h / 2
    step = min(plot_w / max(len(deltas), 1), 36.0)  # a handful of queries should not give slabs
    axis_end = left + step * max(len(deltas), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{PLOT_METRIC} change per query">',
        f'<line x1="{left}" y1="{zero}" x2="{axis_end:.2f}" y2="{zero}" stroke="#8a94a3"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#c4cad2"/>',
        f'<text x="{left - 6}" y="{top + 9}" text-anchor="end">+{scale:.1f}</text>',
        f'<text x="{left - 6}" y="{zero + 4}" text-anchor="end">0</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">−{scale:.1f}</text>',
    ]
    for position, (section, qid, delta) in enumerate(sorted(deltas, key=lambda item: -item[2])):
        bar = max(abs(delta) / scale * plot_h / 2, 1.0)  # ties still get a visible sliver
        y = zero - bar if delta > 0 else zero
        colour = "#2e7d32" if delta > TIE else "#c62828" if delta < -TIE else "#9aa3ae"
        parts.append(
            f'<a href="#q{section}"><rect x="{left + position * step + step * 0.1:.2f}" y="{y:.2f}" '
            f'width="{max(step * 0.8, 1):.2f}" height="{bar:.2f}" fill="{colour}">'
            f"<title>{text(qid)}: {delta:+.4f}</title></rect></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Inputs:
    run: RunFile
    baseline: RunFile | None
    notes: Mapping[tuple[str, str], Note]
    qrels: Qrels | None
    queries: Mapping[str, Query]
    depth: int
    passages: Mapping[str, str]


def query_order(inputs: Inputs) -> list[str]:
    """The run's queries, in topic order when topics are given."""
    if not inputs.queries:
        return list(inputs.run.ranked)
    stray = [qid for qid in inputs.run.ranked if qid not in inputs.queries]
    if stray:
        raise UserError(f"query {stray[0]} of {inputs.run.path} is not in --topics: pass the topics of the run")
    return [qid for qid in inputs.queries if qid in inputs.run.ranked]


def evaluations(inputs: Inputs) -> tuple[Evaluation | None, Evaluation | None]:
    if inputs.qrels is None:
        return None, None
    excluded = {qid: q.excluded_ids for qid, q in inputs.queries.items() if q.excluded_ids}
    run = evaluate(inputs.run.scores(), inputs.qrels, excluded)
    base = evaluate(inputs.baseline.scores(), inputs.qrels, excluded) if inputs.baseline else None
    return run, base


def summary_section(inputs: Inputs, qids: Sequence[str], run_eval: Evaluation | None,
                    base_eval: Evaluation | None) -> str:
    parts = ['<section id="summary"><h2>Summary</h2>']
    if run_eval is None:
        parts.append('<p class="meta">No qrels given (--qrels): no metrics and no relevance marks.</p></section>')
        return "".join(parts)
    head = "<tr><th>metric</th>" + (f"<th class=num>baseline <code>{text(inputs.baseline.tag)}</code></th>"
                                     if inputs.baseline and base_eval else "")
    head += f"<th class=num>run <code>{text(inputs.run.tag)}</code></th>"
    head += "<th class=num>Δ</th><th class=num>p (paired t)</th></tr>" if base_eval else "</tr>"
    rows = [head]
    significance = True
    for metric in METRICS:
        row = f"<tr><td>{text(metric)}</td>"
        if base_eval:
            row += f"<td class=num>{base_eval.mean[metric]:.4f}</td>"
        row += f"<td class=num>{run_eval.mean[metric]:.4f}</td>"
        if base_eval:
            row += f"<td class=num>{signed(run_eval.mean[metric] - base_eval.mean[metric])}</td>"
            both = [qid for qid in run_eval.per_query if qid in base_eval.per_query]
            try:
                p_value = paired_p_value([base_eval.per_query[q][metric] for q in both],
                                         [run_eval.per_query[q][metric] for q in both])
            except ImportError:
                p_value, significance = None, False
            mark = "" if p_value is None else f"{p_value:.3g}" + (" *" if p_value < SIGNIFICANCE else "")
            row += f'<td class="num{" sig" if mark.endswith("*") else ""}">{mark}</td>'
        rows.append(row + "</tr>")
    rows.append(f"<tr><td>judged queries</td>{f'<td class=num>{base_eval.queries}</td>' if base_eval else ''}"
                f"<td class=num>{run_eval.queries}</td>{'<td></td><td></td>' if base_eval else ''}</tr>")
    parts.append(f'<table class="metrics">{"".join(rows)}</table>')
    if base_eval is not None:
        parts.append(f'<p class="meta">p: two-sided paired t-test over the queries judged in both runs (ranx); '
                     f"* below {SIGNIFICANCE}.</p>" if significance else
                     '<p class="meta">No significance test: install ranx (<code>pip install '
                     "'reasonrank[report]'</code>).</p>")
    if base_eval is not None:
        deltas = [
            (section, qid, run_eval.per_query[qid][PLOT_METRIC] - base_eval.per_query[qid][PLOT_METRIC])
            for section, qid in enumerate(qids, start=1)
            if qid in run_eval.per_query and qid in base_eval.per_query
        ]
        wins = sum(d > TIE for _, _, d in deltas)
        losses = sum(d < -TIE for _, _, d in deltas)
        parts.append(f'<p class="wins"><b>{PLOT_METRIC}</b> per query, run vs baseline: '
                     f'<span class="up">{wins} wins</span>, <span class="down">{losses} losses</span>, '
                     f"{len(deltas) - wins - losses} ties (bars link to the queries)</p>")
        parts.append(wins_losses_svg(deltas))
    parts.append(query_index(inputs, qids, run_eval, base_eval))
    parts.append("</section>")
    return "".join(parts)


def query_index(inputs: Inputs, qids: Sequence[str], run_eval: Evaluation, base_eval: Evaluation | None) -> str:
    rows = ["<tr><th>#</th><th>qid</th><th>query</th>"
            + ("<th class=num>baseline</th>" if base_eval else "") + f"<th class=num>run {PLOT_METRIC}</th>"
            + ("<th class=num>Δ</th>" if base_eval else "") + "</tr>"]
    for section, qid in enumerate(qids, start=1):
        after = run_eval.per_query.get(qid, {}).get(PLOT_METRIC)
        before = base_eval.per_query.get(qid, {}).get(PLOT_METRIC) if base_eval else None
        query = inputs.queries.get(qid)
        row = (f'<tr><td>{section}</td><td><a href="#q{section}">{text(qid)}</a></td>'
               f"<td>{text(query.text) if query else ''}</td>")
        if base_eval:
            row += f"<td class=num>{'' if before is None else f'{before:.4f}'}</td>"
        row += f"<td class=num>{'not judged' if after is None else f'{after:.4f}'}</td>"
        if base_eval:
            row += f"<td class=num>{signed(after - before) if None not in (after, before) else ''}</td>"
        rows.append(row + "</tr>")
    return f'<details class="index"><summary>all queries</summary><table>{"".join(rows)}</table></details>'


def query_section(inputs: Inputs, section: int, qid: str, run_eval: Evaluation | None,
                  base_eval: Evaluation | None) -> str:
    judged = inputs.qrels.get(qid, {}) if inputs.qrels is not None else {}
    marks = inputs.qrels is not None

    def grade(docid: str) -> str:
        return grade_mark(judged.get(docid)) if marks else ""

    reranked = inputs.run.ranked[qid]
    base_list = inputs.baseline.ranked.get(qid, []) if inputs.baseline else []
    base_rank = {docid: rank for rank, (docid, _) in enumerate(base_list, start=1)}
    run_rank = {docid: rank for rank, (docid, _) in enumerate(reranked, start=1)}
    query = inputs.queries.get(qid)
    title = f"{text(qid)}" + (f" — {text(query.text)}" if query else "")
    parts = [f'<section class="query" id="q{section}" data-qid="{text(qid)}"><h2>{section}. {title}</h2>']
    if run_eval is not None:
        after = run_eval.per_query.get(qid, {}).get(PLOT_METRIC)
        before = base_eval.per_query.get(qid, {}).get(PLOT_METRIC) if base_eval else None
        if after is None:
            parts.append('<p class="meta ndcg">not judged in the qrels</p>')
        elif before is None:
            parts.append(f'<p class="meta ndcg">{PLOT_METRIC} {after:.4f}</p>')
        else:
            parts.append(f'<p class="meta ndcg">{PLOT_METRIC} {before:.4f} → {after:.4f} '
                         f"({signed(after - before)})</p>")
    parts.append(f'<div class="lists{"" if inputs.baseline else " single"}">')
    if inputs.baseline:
        rows = [f"<tr><th class=num>#</th><th>docid</th>{'<th>rel</th>' if marks else ''}"
                f"<th class=num>score</th><th>now</th>{'<th>passage</th>' if inputs.passages else ''}</tr>"]
        for rank, (docid, score) in enumerate(base_list[: inputs.depth], start=1):
            now = run_rank.get(docid)
            passage = passage_html(inputs.passages, inputs.notes.get((qid, docid)), qid, docid)
            rows.append(f"<tr><td class=num>{rank}</td><td><code>{text(docid)}</code></td>"
                        f"{f'<td>{grade(docid)}</td>' if marks else ''}<td class=num>{score:.4f}</td>"
                        f"<td>{'—' if now is None else f'→ {now}'}</td>"
                        f"{f'<td>{passage}</td>' if inputs.passages else ''}</tr>")
        parts.append(f'<div><h3>baseline <code>{text(inputs.baseline.tag)}</code></h3>'
                     f'<table class="baseline">{"".join(rows)}</table></div>')
    rows = [f"<tr><th class=num>#</th>{'<th>move</th>' if inputs.baseline else ''}<th>docid</th>"
            f"{'<th>rel</th>' if marks else ''}<th class=num>score</th>"
            f"<th>{'passage and explanation' if inputs.passages else 'explanation'}</th></tr>"]
    for rank, (docid, score) in enumerate(reranked[: inputs.depth], start=1):
        move = f"<td>{movement(base_rank.get(docid), rank)}</td>" if inputs.baseline else ""
        note = inputs.notes.get((qid, docid))
        rows.append(f"<tr><td class=num>{rank}</td>{move}<td><code>{text(docid)}</code></td>"
                    f"{f'<td>{grade(docid)}</td>' if marks else ''}<td class=num>{score:.4f}</td>"
                    f"<td>{passage_html(inputs.passages, note, qid, docid)}{note_html(note)}</td></tr>")
    parts.append(f'<div><h3>reranked <code>{text(inputs.run.tag)}</code></h3>'
                 f'<table class="reranked">{"".join(rows)}</table></div>')
    parts.append("</div></section>")
    return "".join(parts)


def render_report(
    run: RunFile,
    baseline: RunFile | None = None,
    notes: Mapping[tuple[str, str], Note] | None = None,
    qrels: Qrels | None = None,
    queries: Sequence[Query] = (),
    depth: int = 10,
    passages: Mapping[str, str] | None = None,
) -> str:
    """The whole page as one HTML string (deterministic: same inputs, same bytes)."""
    if depth < 1:
        raise UserError(f"--depth must be at least 1, got {depth}")
    notes = notes or {}
    ranked_pairs = {(qid, docid) for qid, docs in run.ranked.items() for docid, _ in docs}
    if notes and ranked_pairs.isdisjoint(notes):
        raise UserError(f"no explanation matches a (query, document) of {run.path}: pass the explanations of that run")
    if baseline and set(baseline.ranked) != set(run.ranked):
        # Mean metrics over different query sets would compare nothing: refuse rather than mislead.
        common = len(set(baseline.ranked) & set(run.ranked))
        raise UserError(f"{run.path} covers {len(run.ranked)} queries and the baseline {baseline.path} "
                        f"{len(baseline.ranked)}, {common} in common: pass a baseline over the same topics")
    inputs = Inputs(run, baseline, notes, qrels, {q.qid: q for q in queries}, depth, passages or {})
    qids = query_order(inputs)
    run_eval, base_eval = evaluations(inputs)
    described = f"run <code>{text(run.path.name)}</code> (tag <code>{text(run.tag)}</code>)"
    if baseline:
        described += f" vs baseline <code>{text(baseline.path.name)}</code> (tag <code>{text(baseline.tag)}</code>)"
    legend = ""
    if qrels is not None:
        legend = ('<p class="meta legend">relevance: ' + "".join(f"<span>{grade_mark(g)} grade {g}</span>"
                  for g in range(4)) + f"<span>{grade_mark(None)} not judged</span>"
                  + ('<span>moves: <span class="up">▲ up</span> <span class="down">▼ down</span> '
                     '<span class="new">new</span> (not in the baseline list)</span>' if baseline else "") + "</p>")
    body = [
        f"<header><h1>reasonrank run report</h1><p class=meta>{described}; {len(qids)} queries; "
        f"top {depth} shown per list; reasonrank {text(__version__)}</p>{legend}</header>",
        summary_section(inputs, qids, run_eval, base_eval),
        *(query_section(inputs, section, qid, run_eval, base_eval) for section, qid in enumerate(qids, start=1)),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>reasonrank report: {text(run.tag)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


if __name__ == "__main__":  # ``python -m reasonrank.report``, kept as documented; the command is reasonrank.cli.report
    import sys

    from reasonrank.cli.report import main

    sys.exit(main())
