#!/bin/sh
# Install what the tests need (Debian packages, then the package with its test extras into ./.venv)
# and run the whole test suite. Extra arguments go to pytest, e.g. `sh test.sh tests/extract -x`.
set -eu
cd "$(dirname "$0")"
./tools/system-packages.sh
TEST_EXTRAS=1 . ./tools/venv.sh
# two workers: the suite waits on agents, brokers and browsers more than it computes (17 min alone on a
# slow 2-core machine, 9 with two); tests sharing the broker on 127.0.0.1:1883 stay on one (xdist_group)
exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
