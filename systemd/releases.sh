# Sourced by install.sh: the venvs under a base folder (/opt/alara-edge). BASE/venv links the release the
# service runs, BASE/venv.previous the rollback (the last *different* release), each BASE/venv-* is a release.
# A release is told by what pip installed in it, not by the version number alone (every checkout of a branch
# may carry the same one): re-running install.sh with the release already running keeps the rollback.

# release_id VENV: "VERSION BUILD STATE" of the alara-edge in VENV, from pip's metadata (RECORD). BUILD hashes
# the package's recorded files and the names of the venv's distributions (--central adds psycopg); STATE is
# "damaged" when a file any distribution recorded is missing or changed. Prints nothing for a venv without it.
release_id() {
    "$1/bin/python" -I -c '
import base64, hashlib, importlib.metadata as md
dists, me = list(md.distributions()), md.distribution("alara-edge")
def ok(f):
    try:
        data = f.locate().read_bytes()
    except OSError:
        return False
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() == f.hash.value
intact = all(ok(f) for d in dists for f in d.files or () if f.hash and f.hash.mode == "sha256")
own = [f"{f}={f.hash.value}" for f in me.files
       if f.hash and not str(f).startswith("..") and f.name != "direct_url.json"]  # not bin/ nor the checkout path
names = {(d.metadata["Name"] or "").lower() for d in dists} - {"pip", "setuptools", "wheel"}
build = hashlib.sha256("\n".join(sorted(own) + sorted(names)).encode()).hexdigest()[:12]
print(me.version, build, "intact" if intact else "damaged")' 2>/dev/null || true
}

# release_name VENV ID: "alara-edge VERSION (build BUILD)" for messages, from VENV's release_id ID (read once:
# it hashes every installed file)
release_name() {
    set -- "$1" $2
    if [ $# -ge 3 ]; then echo "alara-edge $2 (build $3)"; else echo "an unreadable venv ($1)"; fi
}

# hold_install_lock BASE: one install.sh at a time on a box (a person and configuration management may run it
# at once, and both would prune and switch BASE's venvs). Waits, saying so, while another run holds the lock
# (at most an hour); the lock is released when install.sh exits, however it ends.
hold_install_lock() {
    exec 9>"$1/.install.lock"
    if ! flock -n 9; then
        echo "another install.sh is running on this box: waiting for it to finish" >&2
        flock -w 3600 9 || { echo "gave up after an hour waiting for the other install.sh" >&2; return 1; }
    fi
}

# prune_releases BASE: remove each BASE/venv-* that neither BASE/venv nor BASE/venv.previous links (one that an
# interrupted or failed install left), so that at most three exist: the current, the rollback, the one built
prune_releases() {
    _cur=$(readlink "$1/venv" || true)
    _prev=$(readlink "$1/venv.previous" || true)
    for _dir in "$1"/venv-*; do
        [ -d "$_dir" ] && [ "$_dir" != "$_cur" ] && [ "$_dir" != "$_prev" ] && rm -rf "$_dir"
    done
    return 0
}

# source_id SPEC: what install.sh would build here (run from the checkout's top): the pip SPEC ("." or
# ".[postgres]") and the files the package is built from (pyproject.toml, agent/, drivers/, simulator/, without
# compiled caches), hashed. The same id builds the same release; tests and docs do not count.
source_id() {
    { echo "$1"; find pyproject.toml agent drivers simulator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
          -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16
}

# kept_release BASE SOURCE: whether BASE/venv was built from SOURCE (a source_id, recorded in the venv's
# alara-edge-source by install.sh) and is intact: then a re-run (configuration management every hour) need not
# build a venv (minutes on a Raspberry Pi, and the network) to find the same release; says so.
kept_release() {
    _cur=$(readlink "$1/venv" || true)
    [ -n "$_cur" ] && [ "$(cat "$_cur/alara-edge-source" 2>/dev/null)" = "$2" ] || return 1
    _cur_id=$(release_id "$_cur")
    [ "${_cur_id##* }" = intact ] || return 1
    RELEASE_SWITCHED=
    echo "$(release_name "$_cur" "$_cur_id") is already installed from this checkout: kept it, $(_rollback_to "$1")"
}

# _rollback_to BASE: where BASE/venv.previous leads, for messages
_rollback_to() {
    _prev=$(readlink "$1/venv.previous" || true)
    if [ -n "$_prev" ] && [ "$_prev" != "$(readlink "$1/venv" || true)" ] && [ -d "$_prev" ]; then
        echo "rollback still to $(release_name "$_prev" "$(release_id "$_prev")")"
    else
        echo "no rollback (no earlier release kept)"
    fi
}

# switch_release BASE NEW: make the release built in NEW the one BASE/venv links, says what happened.
# - a different release (or the first): BASE/venv.previous links the one running until now, the one it
#   linked before is removed
# - the release already running: it stays (NEW is removed) and nothing needs a restart; if its files are
#   damaged (or unreadable) NEW replaces it. Either way BASE/venv.previous is left as it was.
# Sets RELEASE_SWITCHED=1 when BASE/venv links another folder than before.
switch_release() {
    _cur=$(readlink "$1/venv" || true)
    _prev=$(readlink "$1/venv.previous" || true)
    _new_id=$(release_id "$2")
    _new_name=$(release_name "$2" "$_new_id")
    RELEASE_SWITCHED=
    if [ -z "$_cur" ]; then
        ln -sfn "$2" "$1/venv"
        RELEASE_SWITCHED=1
        echo "installed $_new_name"
        return 0
    fi
    _cur_id=$(release_id "$_cur")
    if [ -n "$_new_id" ] && [ "$_cur_id" = "$_new_id" ]; then
        rm -rf "$2"
        echo "$_new_name is already installed: kept it, $(_rollback_to "$1")"
    elif [ -z "$_cur_id" ] || [ "${_cur_id% *}" = "${_new_id% *}" ]; then
        _rollback=$(_rollback_to "$1")  # before the damaged venv is replaced: it may be venv.previous too
        ln -sfn "$2" "$1/venv"
        RELEASE_SWITCHED=1
        [ "$_cur" = "$_prev" ] || rm -rf "$_cur"
        echo "$_new_name is already installed but its venv was damaged: reinstalled, $_rollback"
    else
        _old_name=$(release_name "$_cur" "$_cur_id")
        [ -z "$_prev" ] || [ "$_prev" = "$_cur" ] || rm -rf "$_prev"
        ln -sfn "$_cur" "$1/venv.previous"
        ln -sfn "$2" "$1/venv"
        RELEASE_SWITCHED=1
        echo "installed $_new_name, rollback to $_old_name:" \
            "ln -sfn \"\$(readlink $1/venv.previous)\" $1/venv"
    fi
}
