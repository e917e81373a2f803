"""The charts and best-prompt panels of the HTML report (see :mod:`promptsearch.report.page`).

Each function turns :class:`~promptsearch.report.data.ReportData` into one
``<figure>`` or SVG string; the drawing itself is :mod:`promptsearch.report.svg`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from promptsearch.errors import PromptSearchError
from promptsearch.report import svg as _svg
from promptsearch.report.data import Breakdown, Confusion, ReportData, pareto_front
from promptsearch.report.svg import Bar, Point, Series, esc

__all__ = [
    "LENGTH_NOTE",
    "best_prompt_panel",
    "best_section",
    "histogram",
    "progress_chart",
    "scatter",
]

OVERALL_COLOR = "#a3a3a3"
LENGTH_NOTE = (
    "Prompt length counts the characters of the prompt's fixed text: instruction, "
    "demonstrations and template, with slots such as {sentence} as written and no "
    "example filled in."
)


def _colors(data: ReportData) -> dict[str, str]:
    return {name: _svg.PALETTE[i % len(_svg.PALETTE)] for i, name in enumerate(data.searchers)}


def progress_chart(data: ReportData, by_passes: bool) -> str:
    colors = _colors(data)
    spent = 0
    best_overall: float | None = None
    overall: list[Point] = []
    per: dict[str, list[Point]] = defaultdict(list)
    best_of: dict[str, float] = {}
    dots: dict[tuple[str, bool], list[Point]] = defaultdict(list)  # (searcher, pruned)
    for index, trial in enumerate(data.trials, start=1):
        spent += trial.forward_passes
        x = float(spent if by_passes else index)
        if trial.state not in ("complete", "pruned") or trial.dev_score is None:
            continue
        score = trial.dev_score
        where = f"{spent:,} forward passes" if by_passes else f"evaluation {index}"
        tip = (
            f"{where}, trial #{trial.number} by {trial.searcher} ({trial.operation}): "
            f"{score:.4f}, prompt {trial.content_hash[:10]}"
        )
        pruned = trial.state == "pruned"
        note = f" (pruned: on its first {trial.n_examples} dev examples)" if pruned else ""
        dots[trial.searcher, pruned].append(Point(x, score, f"trial — {tip}{note}"))
        if pruned:
            continue
        if trial.searcher not in best_of or score > best_of[trial.searcher]:
            best_of[trial.searcher] = score
            per[trial.searcher].append(Point(x, score, f"best of {trial.searcher} — {tip}"))
        if best_overall is None or score > best_overall:
            best_overall = score
            overall.append(Point(x, score, f"best overall — {tip}"))
    series = [Series("all searchers", OVERALL_COLOR, overall, width=4.5)]
    series += [Series(name, colors[name], per[name], dashed=True) for name in data.searchers]
    trial_dots = [
        Series(name, colors[name], points, dashed=pruned, opacity=0.6)
        for (name, pruned), points in dots.items()
    ]
    axis = "forward passes spent" if by_passes else "prompt evaluations spent (trial order)"
    title = "Best dev score by " + ("forward passes" if by_passes else "evaluations")
    return _svg.line_chart(
        "progress-passes" if by_passes else "progress",
        title,
        series,
        axis,
        f"best dev {data.study.task_spec.get('metric', 'score')} so far",
        x_end=float(spent if by_passes else len(data.trials)),
        empty="no complete trial yet",
        dots=trial_dots,
        dots_name="each trial (hollow: pruned by racing)"
        if any(pruned for _, pruned in dots)
        else "each trial",
    )


def _bins(scores: Sequence[float], sizes: Sequence[int]) -> list[float]:
    """Histogram edges: one bin per possible value when every score is a count out of
    the same number of examples and the values are few, else 15 even bins."""
    low, high = min(scores), max(scores)
    n = sizes[0] if sizes and len(set(sizes)) == 1 else 0
    if n and all(abs(s * n - round(s * n)) < 1e-6 for s in scores):
        first, last = round(low * n), round(high * n)
        if last - first <= 30:
            return [(k - 0.5) / n for k in range(first, last + 2)]
    if high - low < 1e-9:
        return [low - 0.05, high + 0.05]
    step = (high - low) / 15
    return [low + i * step for i in range(16)]


def histogram(data: ReportData) -> str:
    rows = data.ranked
    metric = data.study.task_spec.get("metric", "score")
    if not rows:
        return _svg.histogram("histogram", "Dev scores of all candidates", [0, 1], [], metric, "")
    scores = [r.dev_score for r in rows]
    edges = _bins(scores, [r.n_examples for r in rows])
    colors = _colors(data)
    bars = []
    for name in data.searchers:
        counts = [0] * (len(edges) - 1)
        for row in rows:
            if row.searcher == name:
                slot = next(
                    (i for i in range(len(counts)) if row.dev_score < edges[i + 1]), len(counts) - 1
                )
                counts[slot] += 1
        if any(counts):
            tips = [
                f"{name}: {c} prompt(s) with dev {metric} in [{edges[i]:.3f}, {edges[i + 1]:.3f})"
                for i, c in enumerate(counts)
            ]
            bars.append(Bar(name, colors[name], counts, tips))
    return _svg.histogram(
        "histogram",
        f"Dev scores of all {len(rows)} complete candidates",
        edges,
        bars,
        f"dev {metric}",
        "prompts",
    )


def scatter(data: ReportData) -> str:
    rows = data.ranked
    metric = data.study.task_spec.get("metric", "score")
    points = [(float(data.lengths[r.content_hash]), r.dev_score) for r in rows]
    front = set(pareto_front(points))
    colors = _colors(data)

    def tip(i: int) -> str:
        row = rows[i]
        mark = " — on the Pareto front" if i in front else ""
        return (
            f"rank {row.rank}, dev {row.dev_score:.4f}, {int(points[i][0])} characters, "
            f"{row.searcher} ({row.operation}){mark}\n{row.text}"
        )

    groups = [
        Series(
            name,
            colors[name],
            [Point(*points[i], tip(i)) for i, r in enumerate(rows) if r.searcher == name],
        )
        for name in data.searchers
        if any(r.searcher == name for r in rows)
    ]
    front_points = [Point(*points[i], tip(i)) for i in sorted(front)]
    return _svg.scatter_chart(
        "pareto",
        "Dev score against prompt length",
        groups,
        front_points,
        "prompt length (characters of instruction, demonstrations and template)",
        f"dev {metric}",
        front_name="Pareto front (higher score, shorter prompt)",
        empty="no complete trial yet",
    )


def _label(label: str, words: Mapping[str, str]) -> str:
    word = words.get(label)
    return label if not word or word == label else f"{label} · {word}"


def best_section(data: ReportData) -> str:
    detail, note = data.best_detail, data.best_note
    best = data.ranked[0] if data.ranked else None
    caption = (
        ""
        if best is None
        else f"Best prompt (rank 1, {best.content_hash[:10]}) on the dev split: {esc(best.text)}"
    )
    extra = f'<p class="note plain">{esc(note)}</p>' if note and detail is not None else ""
    if isinstance(detail, Confusion):
        rows = [_label(label, detail.words) for label in detail.labels]
        columns = [_label(label, detail.words) for label in detail.columns]
        correct = sum(detail.counts[i][i] for i in range(len(detail.labels)))
        chart = _svg.heatmap(
            "confusion",
            f"Confusion matrix of the best prompt ({correct}/{detail.n_cached} correct)",
            rows,
            columns,
            detail.counts,
            "predicted label",
            "gold label",
        )
        return f"<figure>{chart}{extra}<figcaption>{caption}</figcaption></figure>"
    if isinstance(detail, Breakdown):
        table = "".join(
            f"<tr><td>{esc(i)}</td><td>{esc(g)}</td><td>{esc(p)}</td>"
            f'<td class="num">{s:.2f}</td></tr>'
            for i, g, p, s in detail.errors
        )
        errors = (
            '<div class="scroll"><table><tr><th>input</th><th>gold</th><th>prediction</th>'
            f'<th class="num">score</th></tr>{table}</table></div>'
            if table
            else ""
        )
        chart = _svg.share_bar(
            "breakdown",
            f"Best prompt on dev: {detail.n_correct} correct, {detail.n_incorrect} incorrect",
            [
                Bar("correct", "#2ca02c", [detail.n_correct], [f"{detail.n_correct} correct"]),
                Bar(
                    "incorrect",
                    "#d62728",
                    [detail.n_incorrect],
                    [f"{detail.n_incorrect} incorrect"],
                ),
            ],
            f"{detail.n_correct + detail.n_incorrect} dev examples; mean {detail.metric} "
            f"{detail.mean_score:.3f}",
        )
        return (
            f"<figure>{chart}{extra}<figcaption>Generation task: no label set, so a "
            f"correct/incorrect breakdown instead of a confusion matrix; first wrong "
            f"answers below. {caption}</figcaption>{errors}</figure>"
        )
    return (
        '<figure><div class="note" data-chart="confusion-missing"><strong>No confusion '
        f"matrix:</strong> {esc(note)}.</div><figcaption>{caption}</figcaption></figure>"
    )


def best_prompt_panel(data: ReportData) -> str:
    """The best prompt in full: its text, label words, score and where it came from."""
    from promptsearch.prompt import Prompt

    if not data.ranked:
        return ""
    best = data.ranked[0]
    parts = [
        '<figure class="panel" data-chart="best-prompt"><div class="panel-title">Best prompt</div>',
        f'<p class="facts">dev {esc(data.study.task_spec.get("metric", "score"))} '
        f"<strong>{best.dev_score:.4f}</strong> on {best.n_examples} examples · "
        f"{esc(best.searcher)} ({esc(best.operation)}) · trial #{best.number} · "
        f"{data.lengths[best.content_hash]} characters · "
        f'<span class="hash" title="{esc(best.content_hash)}">{esc(best.content_hash[:12])}'
        "</span></p>",
    ]
    try:
        prompt: Prompt | None = Prompt.from_dict(best.body)
    except PromptSearchError:
        prompt = None
    if prompt is None:
        parts.append(f"<pre>{esc(best.text)}</pre>")
    else:
        if prompt.instruction.strip():
            parts.append(f"<h3>instruction</h3><pre>{esc(prompt.instruction)}</pre>")
        if prompt.demonstrations:
            parts.append(f"<h3>demonstrations</h3><p>{len(prompt.demonstrations)} from train</p>")
        parts.append(f"<h3>template</h3><pre>{esc(prompt.template)}</pre>")
        words = prompt.verbalizer or data.study.task_spec.get("verbalizer") or {}
        if words:
            items = "".join(
                f"<tr><td>{esc(label)}</td><td>{esc(' | '.join(map(str, w)))}</td>"
                f"{_recall(data, label)}</tr>"
                for label, w in words.items()
            )
            recall_head = '<th class="num">dev recall</th>' if _has_confusion(data) else ""
            source = "" if prompt.verbalizer else " (the task's)"
            parts.append(
                f"<h3>label words{source}</h3><table class='words'><tr><th>label</th>"
                f"<th>words</th>{recall_head}</tr>{items}</table>"
            )
    if len(data.best_lineage) > 1:
        steps = "".join(
            f"<li><span class='hash'>{esc(e.content_hash[:10])}</span> "
            f"{esc(e.operation or 'no trial in this study')}"
            + ("" if e.dev_score is None else f", dev {e.dev_score:.4f}")
            + f"<br><span class='muted'>{esc(e.text)}</span></li>"
            for e in data.best_lineage[1:7]
        )
        parts.append(f"<h3>lineage (parent first)</h3><ol class='lineage'>{steps}</ol>")
    parts.append("</figure>")
    return "".join(parts)


def _has_confusion(data: ReportData) -> bool:
    return isinstance(data.best_detail, Confusion)


def _recall(data: ReportData, label: str) -> str:
    detail = data.best_detail
    if not isinstance(detail, Confusion):
        return ""
    if label not in detail.labels:
        return "<td class='num'>–</td>"
    i = detail.labels.index(label)
    row = detail.counts[i]
    total = sum(row)
    value = "–" if not total else f"{row[i]}/{total} ({row[i] / total:.0%})"
    return f"<td class='num'>{value}</td>"
