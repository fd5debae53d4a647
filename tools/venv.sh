# Sourced by start.sh and test.sh: create ./.venv if needed and install the package into it.
# Set TEST_EXTRAS=1 to include the test dependencies.
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "alara-edge needs Python 3.11 or newer (found $(python3 --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        echo "python3 -m venv failed; installing Debian's python3-venv" >&2
        ./tools/system-packages.sh python3-venv
        python3 -m venv .venv
    fi
fi
if [ "${TEST_EXTRAS:-}" = 1 ]; then spec='.[test]'; else spec='.'; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# -qq: errors only (setuptools prints an "Editable installation" notice block for every editable install)
.venv/bin/python -m pip install --quiet --quiet --disable-pip-version-check -e "$spec"
