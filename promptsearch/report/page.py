"""``promptsearch report``: one self-contained HTML page about a study.

::

    from promptsearch.report.page import write_report
    write_report("runs.db", "sst2-SmolLM2", "sst2.html")

The page holds the study summary, charts drawn as inline SVG by
:mod:`promptsearch.report.svg` (best dev score against budget spent, the distribution of
candidate scores, score against prompt length with its Pareto front, the best
prompt's confusion matrix) and the leaderboard.  It needs no network: no external
scripts, styles, fonts or images, and a Content-Security-Policy that forbids them.
Every string from the database is HTML-escaped.  Building it loads no model and
imports neither torch nor transformers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch._output import write_output
from promptsearch.errors import ConfigError
from promptsearch.report import charts as _charts
from promptsearch.report.data import ReportData, collect
from promptsearch.report.svg import esc

if TYPE_CHECKING:
    from promptsearch.storage import Storage
    from promptsearch.task import Task

__all__ = ["build_report", "default_report_path", "render_report", "write_report"]

_STYLE = """
:root{--ink:#1b1b1b;--muted:#5f6368;--line:#d9dce1;--soft:#f5f6f8;--accent:#1f77b4}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:#fff}
main{max-width:1320px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px;word-break:break-word}
h2{font-size:18px;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.card{background:var(--soft);border-radius:8px;padding:10px 12px;min-width:0}
.card dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card dd{margin:2px 0 0;font-size:15px;font-weight:600;word-break:break-word}
.card dd small{font-weight:400;color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:18px}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 12px;min-width:0}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
svg.chart{width:100%;height:auto;display:block;font-family:inherit}
svg .title{font-size:15px;font-weight:600;fill:var(--ink)}
svg .tick{font-size:11.5px;fill:#444}
svg .label{font-size:12.5px;fill:#333}
svg .legend{font-size:12px;fill:#333}
svg .empty{font-size:14px;fill:var(--muted)}
svg .count{font-size:14px;font-weight:600}
svg .plot{fill:#fff}
svg .grid{stroke:#eceef1;stroke-width:1}
svg .axis{stroke:#888;stroke-width:1}
svg .point:hover,svg .bar:hover,svg .cell:hover rect{stroke:#000;stroke-width:1.5}
.note{background:#fff8e1;border:1px solid #f1d48a;border-radius:6px;padding:10px 12px;
margin:8px 0;font-size:13px}
.note.plain{background:var(--soft);border-color:var(--line)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.prompt{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;
white-space:pre-wrap;word-break:break-word;min-width:320px}
td.hash{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
tr.best td{background:#eef6fc}
tr.baseline td{background:#f4f4f4}
td.nowrap{white-space:nowrap}
.panel-title{font-size:15px;font-weight:600;margin:4px 0 8px}
.panel h3{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
margin:12px 0 4px;font-weight:600}
.panel pre{margin:0;background:var(--soft);border-radius:6px;padding:8px 10px;
white-space:pre-wrap;word-break:break-word;font-size:12.5px}
.panel .facts{margin:0 0 6px}
.panel table{width:auto;min-width:60%}
.hash{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.muted{color:var(--muted);font-size:12px;word-break:break-word}
ol.lineage{margin:0;padding-left:22px}
ol.lineage li{margin-bottom:4px}
.scroll{overflow-x:auto}
footer{margin-top:36px;color:var(--muted);font-size:12px}
"""

# Runs first: records script errors, failed loads and blocked requests on <html>, and
# marks the page once loaded (read by tests in a headless browser).
_SCRIPT = """
(function(){var root=document.documentElement,errors=[];
function record(m){errors.push(String(m));
root.setAttribute('data-report-errors',errors.join(' | '));}
window.addEventListener('error',function(e){var t=e.target;
record(e.message||('failed to load '+((t&&(t.src||t.href))||'a resource')));},true);
window.addEventListener('unhandledrejection',function(e){
record('unhandled rejection: '+e.reason);});
document.addEventListener('securitypolicyviolation',function(e){record('blocked '+e.blockedURI);});
window.addEventListener('load',function(){
root.setAttribute('data-report-charts',String(document.querySelectorAll('svg.chart').length));
root.setAttribute('data-report-rendered','yes');});})();
"""

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _when(moment: datetime | None) -> str:
    return "–" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- tables ------------------------------------------------------------------------------


def _summary(data: ReportData) -> str:
    study, totals, states = data.study, data.totals, data.state_counts()
    spec = study.task_spec
    budget = study.config.get("budget") or {}
    budget_text = ", ".join(f"{k} {v}" for k, v in budget.items() if v is not None) or "–"
    sizes = spec.get("sizes") or {}
    best = data.ranked[0].dev_score if data.ranked else None
    wall = (study.finished_at or study.updated_at) - study.created_at
    searchers = ", ".join(
        s.get("name", "?") if isinstance(s, dict) else str(s)
        for s in study.config.get("searchers", [])
    )
    cards = [
        ("task", study.task_name, f"{spec.get('kind', '')}, {spec.get('metric', '')}"),
        ("splits", " / ".join(str(sizes.get(s, "–")) for s in ("train", "dev", "test")), ""),
        ("model", study.model_name, study.model_fingerprint[:12]),
        ("best dev score", _fmt(best, 4), f"of {len(data.ranked)} complete"),
        ("budget", budget_text, ""),
        ("searchers", searchers or ", ".join(data.searchers), f"seed {study.seed}"),
        (
            "trials",
            f"{states['complete']} complete, {states['failed']} failed",
            f"{states['pruned']} pruned, {states['running']} running",
        ),
        ("forward passes", f"{totals.forward_passes:,}", ""),
        (
            "scoring time",
            _duration(totals.seconds),
            f"study span {_duration(wall.total_seconds())}",
        ),
        ("status", study.status, f"created {_when(study.created_at)}"),
        *_pick_card(study.selection),
    ]
    body = "".join(
        f'<div class="card"><dt>{esc(name)}</dt><dd>{esc(value)}'
        + (f"<br><small>{esc(small)}</small>" if small else "")
        + "</dd></div>"
        for name, value, small in cards
    )
    return f'<dl class="cards">{body}</dl>'


def _pick_card(selection: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The summary card of the study's pick on held-back dev examples, if it made one."""
    if not selection:
        return []
    row = next(r for r in selection["candidates"] if r["key"] == selection["pick"])
    text = str(row.get("text", "?"))
    n_train = int(row.get("n_train", 0))
    on_train = f" and on {n_train} train examples" if n_train else ""
    verdict = (
        f"beat the best seed prompt there{on_train}"
        if selection["replaced_incumbent"]
        else "no candidate beat the best seed prompt there: kept"
    )
    small = (
        f"dev {_fmt(row['search_score'])}, held-back {_fmt(row['confirm_score'])} on "
        f"{selection['n_confirm']}; {verdict}"
    )
    final = selection.get("final")
    if isinstance(final, dict) and final.get("test_score") is not None:
        small += f"; test {_fmt(final['test_score'])}"
    return [("the pick", text if len(text) <= 80 else text[:79] + "…", small)]


def _searcher_table(data: ReportData) -> str:
    lines = []
    for name in data.searchers:
        mine = [t for t in data.trials if t.searcher == name]
        scores = [t.dev_score for t in mine if t.state == "complete" and t.dev_score is not None]
        lines.append(
            f"<tr><td>{esc(name)}</td><td class='num'>{len(mine)}</td>"
            f"<td class='num'>{len(scores)}</td>"
            f"<td class='num'>{sum(t.state == 'pruned' for t in mine)}</td>"
            f"<td class='num'>{sum(t.state == 'failed' for t in mine)}</td>"
            f"<td class='num'>{_fmt(max(scores) if scores else None)}</td>"
            f"<td class='num'>{_fmt(sum(scores) / len(scores) if scores else None)}</td>"
            f"<td class='num'>{sum(t.forward_passes for t in mine):,}</td>"
            f"<td class='num'>{_duration(sum(t.seconds for t in mine))}</td></tr>"
        )
    return (
        '<div class="scroll"><table class="searchers"><tr><th>searcher</th>'
        '<th class="num">trials</th><th class="num">complete</th><th class="num">pruned</th>'
        '<th class="num">failed</th>'
        '<th class="num">best dev</th><th class="num">mean dev</th>'
        '<th class="num">forward passes</th><th class="num">scoring time</th></tr>'
        + "".join(lines)
        + "</table></div>"
    )


def _leaderboard(data: ReportData) -> str:
    if not data.ranked:
        return '<p class="note plain">No complete trial yet.</p>'
    lines = []
    for row in data.leaderboard:
        lines.append(
            f"<tr{' class=best' if row.rank == 1 else ''}><td class='num'>{row.rank}</td>"
            f"<td class='num'>{row.dev_score:.4f}</td><td class='num'>{row.n_examples}</td>"
            f"<td class='nowrap'>{esc(row.searcher)}</td>"
            f"<td class='nowrap'>{esc(row.operation)}</td>"
            f"<td class='num'>{row.number}</td>"
            f"<td class='hash' title='{esc(row.content_hash)}'>{esc(row.content_hash[:10])}</td>"
            f"<td class='num'>{data.lengths[row.content_hash]}</td>"
            f"<td class='prompt'>{esc(row.text)}</td></tr>"
        )
    shown = len(data.leaderboard)
    more = (
        f"<p class='sub'>Top {shown} of {len(data.ranked)} complete prompts "
        "(<code>--top</code> shows more).</p>"
        if shown < len(data.ranked)
        else ""
    )
    return (
        f'{more}<div class="scroll"><table class="leaderboard"><tr><th class="num">rank</th>'
        '<th class="num">dev</th><th class="num">n</th><th>searcher</th><th>operation</th>'
        '<th class="num">trial</th><th>hash</th><th class="num">length</th><th>prompt</th></tr>'
        + "".join(lines)
        + "</table></div>"
    )


def _test_section(data: ReportData) -> str:
    """The held-out results that ``promptsearch final`` stored, if any."""
    if not data.test_results:
        return (
            '<p class="note plain" data-section="test-results">No test-split results are '
            "stored for this study yet; <code>promptsearch final --study NAME</code> scores "
            "the top prompts and the seed prompts on the test split.</p>"
        )
    lines = []
    confidence = None
    for r in data.test_results:
        detail = r.detail or {}
        confidence = confidence or detail.get("confidence")
        role = "baseline" if r.is_baseline else "seed" if r.is_seed else "found"
        interval = "–" if r.ci_low is None else f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
        delta = detail.get("delta")
        shift = "–" if not isinstance(delta, int | float) else f"{delta:+.3f}"
        if isinstance(detail.get("delta_low"), int | float):
            shift += f" [{detail['delta_low']:+.3f}, {detail['delta_high']:+.3f}]"
        p_value = "–" if r.p_value is None else f"{r.p_value:.3g}"
        lines.append(
            f"<tr{' class=baseline' if r.is_baseline else ''}>"
            f"<td class='num'>{'–' if r.dev_rank is None else r.dev_rank}</td>"
            f"<td>{role}</td><td class='num'>{_fmt(r.dev_score, 4)}</td>"
            f"<td class='num'><strong>{r.value:.4f}</strong></td><td class='num'>{interval}</td>"
            f"<td class='num'>{r.n_examples}</td><td class='num'>{shift}</td>"
            f"<td class='num'>{p_value}</td><td class='nowrap'>{esc(r.test_name or '–')}</td>"
            f"<td class='hash' title='{esc(r.content_hash)}'>{esc(r.content_hash[:10])}</td>"
            f"<td class='prompt'>{esc(r.text)}</td></tr>"
        )
    level = f"{confidence:.0%} " if isinstance(confidence, float) else ""
    metric = esc(data.test_results[0].metric)
    return (
        f'<p class="sub">Test {metric} of the prompts <code>promptsearch final</code> scored, '
        "each with its bootstrap interval and a paired test against the baseline (the best "
        "seed prompt by dev score). Test scores played no part in choosing any prompt.</p>"
        f'<div class="scroll" data-section="test-results"><table class="test"><tr>'
        '<th class="num">dev rank</th><th>role</th><th class="num">dev</th>'
        f'<th class="num">test</th><th class="num">{level}CI</th><th class="num">n</th>'
        '<th class="num">Δ vs. baseline</th><th class="num">p-value</th><th>paired test</th>'
        "<th>hash</th><th>prompt</th></tr>" + "".join(lines) + "</table></div>"
    )


# -- the page ----------------------------------------------------------------------------


def render_report(data: ReportData) -> str:
    """The report page of *data* as one HTML string."""
    from promptsearch import __version__

    study = data.study
    charts = [
        f"<figure>{_charts.progress_chart(data, by_passes=False)}<figcaption>Best dev score so far "
        "after each prompt evaluation, in trial order; one dashed line per searcher (its "
        "own best) and a solid line for the study as a whole. Each trial is a dot in its "
        "searcher's colour beside the lines (hollow: stopped early by racing, at its score "
        "on the examples it reached).</figcaption></figure>",
        f"<figure>{_charts.progress_chart(data, by_passes=True)}<figcaption>The same against "
        "forward passes spent; prompts answered from the evaluation cache cost "
        "none.</figcaption></figure>",
        f"<figure>{_charts.histogram(data)}<figcaption>How the dev scores of all complete "
        "candidates are spread, stacked by searcher.</figcaption></figure>",
        f"<figure>{_charts.scatter(data)}<figcaption>Each dot is a complete candidate; ringed "
        f"dots form the Pareto front: no other prompt is as short and scores as high. "
        f"{esc(_charts.LENGTH_NOTE)}</figcaption></figure>",
        _charts.best_section(data),
        _charts.best_prompt_panel(data),
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>promptsearch report: {esc(study.name)}</title>"
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body><main>"
        f"<h1>Study {esc(study.name)}</h1>"
        f'<p class="sub">Task {esc(study.task_name)} · model {esc(study.model_name)} · '
        f"report made {generated} by promptsearch {esc(__version__)}</p>"
        f"{_summary(data)}"
        f'<h2 id="charts">Charts</h2><div class="charts">{"".join(charts)}</div>'
        f'<h2 id="searchers">Searchers</h2>'
        f"{_searcher_table(data)}"
        f'<h2 id="leaderboard">Leaderboard</h2>'
        f"{_leaderboard(data)}"
        f'<h2 id="test">Test split</h2>'
        f"{_test_section(data)}"
        "<footer>Self-contained page: no network requests, no external files. Hover a "
        "point, bar or cell for details.</footer>"
        "</main></body></html>\n"
    )


def build_report(
    storage: Storage | str | None,
    study: str,
    *,
    top: int = 20,
    data_dir: str | Path | None = None,
    task: Task | None = None,
    task_seed: int | None = None,
) -> str:
    """The HTML report of *study* in *storage* (an open storage, URL or SQLite path).

    The best prompt's confusion matrix needs the task's gold labels: a built-in task
    is loaded again (from *data_dir*), any other task must be passed as *task*.
    """
    from promptsearch.storage import Storage, open_storage

    store = storage if isinstance(storage, Storage) else open_storage(storage)
    try:
        data = collect(store, study, top=top, data_dir=data_dir, task=task, task_seed=task_seed)
    finally:
        if store is not storage:
            store.close()
    return render_report(data)


def default_report_path(study: str) -> Path:
    """``<study>.html`` in the current folder, with unsafe characters replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._") or "study"
    return Path(f"{safe}.html")


def write_report(
    storage: Storage | str | None,
    study: str,
    output: str | Path | None = None,
    *,
    top: int = 20,
    data_dir: str | Path | None = None,
    task: Task | None = None,
    task_seed: int | None = None,
) -> Path:
    """Write the report of *study* to *output* (default ``<study>.html``); return the path."""
    path = Path(output) if output is not None else default_report_path(study)
    if path.is_dir():
        raise ConfigError(f"output {path} is a folder; give a file name such as report.html")
    if not path.parent.is_dir():
        raise ConfigError(
            f"output {path}: the folder {path.parent} does not exist; create it first"
        )
    html = build_report(storage, study, top=top, data_dir=data_dir, task=task, task_seed=task_seed)
    return write_output(path, html, option="output")
