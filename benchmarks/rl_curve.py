"""Training curves of the ``rl`` searcher, from the metrics its studies logged.

    python benchmarks/rl_curve.py --storage sqlite:///sst2.db --storage sqlite:///agnews.db \\
        --out benchmarks/results/rl_reward.png

Every study in the given databases with metrics of searcher ``rl`` gets one line
per chart: the reward (the mean gap between the gold label's and the best wrong
label's log-probability, over the prompts sampled at a step), and the share of
positive gaps (train accuracy of the sampled prompts), both as a moving average
over ``--window`` steps, against the training step; and the policy's entropy
per token.  The charts are drawn as SVG (the report's own chart code) into an
HTML page, which headless ``chromium`` turns into the PNG (``--html`` keeps the
page too).  Prints a table of first/last-window means per study.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from promptsearch.report.svg import PALETTE, Point, Series, line_chart
from promptsearch.storage import open_storage


def short_name(study: str) -> str:
    """``bench-sst2-13-rl-b1000-m10`` -> ``sst2 seed 13``."""
    parts = study.split("-")
    return f"{parts[1]} seed {parts[2]}" if len(parts) > 3 and parts[0] == "bench" else study


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curves(urls: list[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """study -> metric key -> [(step, value)] of searcher ``rl``."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for url in urls:
        storage = open_storage(url)
        for study in storage.list_studies():
            rows = storage.metrics(study.name, "rl")
            if not rows:
                continue
            keyed: dict[str, list[tuple[int, float]]] = defaultdict(list)
            for row in rows:
                keyed[row.key].append((row.step, row.value))
            out[study.name] = {k: sorted(v) for k, v in keyed.items()}
    return out


def chart(
    data: dict[str, dict[str, list[tuple[int, float]]]], key: str, title: str, window: int
) -> str:
    series = []
    for k, (study, metrics) in enumerate(sorted(data.items())):
        points = metrics.get(key, [])
        smooth = moving_average([v for _, v in points], window)
        series.append(
            Series(
                short_name(study),
                PALETTE[k % len(PALETTE)],
                [
                    Point(s, v, f"{study} step {s}: {v:.3f}")
                    for (s, _), v in zip(points, smooth, strict=True)
                ],
                width=1.5,
            )
        )
    return line_chart("rl", title, series, "training step", key, extend=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", action="append", required=True, help="database URL/path")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--window", type=int, default=8, help="moving-average window (steps)")
    parser.add_argument("--html", default=None, help="also keep the HTML page here")
    args = parser.parse_args()
    data = curves(args.storage)
    if not data:
        print("no study with rl metrics in the given databases", file=sys.stderr)
        return 1
    print(
        "| study | steps | reward, first window | reward, last window | train acc., first | last |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for study, metrics in sorted(data.items()):
        reward = [v for _, v in metrics.get("reward", [])]
        accuracy = [v for _, v in metrics.get("train_accuracy", [])]
        w = args.window
        print(
            f"| {study} | {len(reward)} | {sum(reward[:w]) / len(reward[:w]):.3f} | "
            f"{sum(reward[-w:]) / len(reward[-w:]):.3f} | "
            f"{sum(accuracy[:w]) / len(accuracy[:w]):.3f} | "
            f"{sum(accuracy[-w:]) / len(accuracy[-w:]):.3f} |"
        )
    svgs = [
        chart(
            data,
            "reward",
            f"reward (gold minus best wrong log-prob), {args.window}-step mean",
            args.window,
        ),
        chart(
            data,
            "train_accuracy",
            f"train accuracy of sampled prompts, {args.window}-step mean",
            args.window,
        ),
        chart(data, "entropy", "policy entropy per token (nats)", 1),
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><style>body{margin:8px;"
        "font-family:sans-serif;background:#fff}svg .title{font-size:15px;font-weight:600}"
        "svg .tick{font-size:11.5px;fill:#444}svg .label,svg .legend{font-size:12px;fill:#333}"
        "svg .plot{fill:#fff}svg .grid{stroke:#eceef1}svg .axis{stroke:#888}"
        "svg .point{display:none}</style></head><body>"
        + "".join(f"<div>{svg}</div>" for svg in svgs)
        + "</body></html>"
    )
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed (bash .ci/chromium.sh); no PNG written", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "curve.html"
        html.write_text(page, encoding="utf-8")
        if args.html:
            shutil.copy(html, args.html)
        out = Path(args.out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={Path(tmp) / 'profile'}",
                f"--screenshot={out}",
                "--window-size=660,1220",
                html.as_uri(),
            ],
            capture_output=True,
            timeout=180,
            check=True,
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
