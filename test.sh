#!/bin/sh
# Install what the tests need (Debian packages, then the package with its test extras into ./.venv)
# and run the whole test suite. Extra arguments go to pytest, e.g. `sh test.sh tests/extract -x`.
set -eu
cd "$(dirname "$0")"
./tools/system-packages.sh
TEST_EXTRAS=1 . ./tools/venv.sh
exec .venv/bin/python -m pytest "$@"
