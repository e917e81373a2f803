#!/usr/bin/env bash
# Run the test suite: starts a throwaway PostgreSQL server for the storage tests
# (installing Debian's postgresql package if needed), then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PROMPTSEARCH_TEST_POSTGRES_URL:-}" ]; then
  pg_env="$(bash .ci/postgres.sh)"  # a failure here stops the run (set -e), never skips silently
  eval "$pg_env"
  trap 'bash .ci/postgres.sh stop >/dev/null 2>&1 || true' EXIT
fi
PY=${PYTHON:-python3}
"$PY" -m ruff check promptsearch tests benchmarks
"$PY" -m mypy promptsearch tests benchmarks
"$PY" -m pytest -q -p no:cacheprovider "$@"
