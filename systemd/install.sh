#!/bin/sh
# Install or upgrade alara-edge as a systemd service (run as root from a checkout):
#   sudo sh systemd/install.sh             # a station: the agent beside a modality (alara-edge.service)
#   sudo sh systemd/install.sh --central   # the central site: the receiver (alara-edge-central.service)
# - a system user `alara-edge` (in group dialout for serial dosimeters)
# - the package in a new venv under /opt/alara-edge, linked as /opt/alara-edge/venv (an upgrade is a
#   re-run from the new checkout: data and configuration stay, the previous venv is kept for rollback;
#   a re-run with the release already running keeps its venv and the rollback, and restarts the service
#   only if it changed something; from the checkout the running venv was built from, it builds nothing)
# - /etc/alara-edge/alara-edge.toml from config/alara-edge.example.toml if there is none yet, and the
#   example reference tables and serial profiles (a file edited here is kept on upgrade)
# - with --central, PostgreSQL support (psycopg) for a [central] database URL
# - data in /var/lib/alara-edge (StateDirectory), logs in the journal: journalctl -u alara-edge
set -eu
cd "$(dirname "$0")/.."
case "${1:-}" in
    "") unit=alara-edge.service; edit="set [station] site (the station id is this host's name unless you set it)"; package=. ;;
    --central) unit=alara-edge-central.service; edit="set [mqtt] (the broker) and [central] database"
               package=".[postgres]" ;;  # psycopg, for a [central] database given as a postgresql:// URL
    *) echo "usage: sh systemd/install.sh [--central]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "run as root (sudo sh systemd/install.sh)" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ required" >&2; exit 1; }

getent group alara-edge >/dev/null || groupadd --system alara-edge
getent passwd alara-edge >/dev/null || useradd --system --gid alara-edge --groups dialout \
    --home-dir /var/lib/alara-edge --no-create-home --shell /usr/sbin/nologin alara-edge

# the configuration is checked as the service's user: a key or password file only root can read passes as root
as_service() { (cd / && runuser -u alara-edge -- "$@"); }

# the installed unit and configuration: the service is restarted only if these or its venv changed (or it is
# not running), so that a re-run changing nothing leaves it running
state() {
    cat "/etc/systemd/system/$unit" 2>/dev/null || true
    find /etc/alara-edge -type f -exec cksum {} + 2>/dev/null | sort
}
before=$(state)
# each install is a new venv; /opt/alara-edge/venv is a symlink switched atomically (the previous release
# stays as /opt/alara-edge/venv.previous for a rollback: ln -sfn "$(readlink venv.previous)" venv).
# A re-run with the release already running keeps it and its rollback (systemd/releases.sh).
. ./systemd/releases.sh
install -d -m 0755 /opt/alara-edge
hold_install_lock /opt/alara-edge  # until this run ends: a second run waits for it
prune_releases /opt/alara-edge
source=$(source_id "$package")  # a re-run from the checkout the running venv was built from builds nothing
if ! kept_release /opt/alara-edge "$source"; then
    release=/opt/alara-edge/venv-$(date +%Y%m%d%H%M%S)
    trap 'rm -rf "$release"' EXIT  # a failed build (pip without network) leaves no venv behind
    # (`python3 -m venv --help` succeeds without Debian's python3-venv: only making one tells)
    python3 -m venv "$release" 2>/dev/null || { rm -rf "$release"; ./tools/system-packages.sh python3-venv
                                                python3 -m venv "$release"; }
    "$release/bin/pip" install --quiet --disable-pip-version-check "$package"
    # an upgrade checks the box's configuration with the new version before switching to it: a problem
    # stops here with the running version, its venv.previous and its unit untouched
    if [ -f /etc/alara-edge/alara-edge.toml ] &&
            ! as_service "$release/bin/alara-edge" check-config /etc/alara-edge/alara-edge.toml; then
        rm -rf "$release"
        echo "nothing was changed: fix the configuration for this version (above), then run install.sh again" >&2
        exit 1
    fi
    trap - EXIT
    switch_release /opt/alara-edge "$release"
    echo "$source" > /opt/alara-edge/venv/alara-edge-source  # the release now running (new, or the same kept)
fi

install -d -m 0750 -o root -g alara-edge /etc/alara-edge
if [ ! -f /etc/alara-edge/alara-edge.toml ]; then
    install -m 0640 -o root -g alara-edge config/alara-edge.example.toml /etc/alara-edge/alara-edge.toml
    echo "wrote /etc/alara-edge/alara-edge.toml: $edit, then: systemctl restart ${unit%.service}"
fi
# reference tables and serial profiles: examples a physicist activates in [checks] tables / [[serial]] profile;
# an upgrade brings new versions but keeps a file edited here (the new one goes beside it as .dist)
install -d -m 0750 -o root -g alara-edge /etc/alara-edge/reference-levels /etc/alara-edge/serial-profiles
OWNER=root GROUP=alara-edge
. ./systemd/examples.sh
for f in config/reference-levels/*.toml; do install_example "$f" /etc/alara-edge/reference-levels; done
for f in config/serial-profiles/*.toml; do install_example "$f" /etc/alara-edge/serial-profiles; done
[ -f /etc/alara-edge/local-drl.toml ] || install -m 0640 -o root -g alara-edge config/local-drl.example.toml /etc/alara-edge/local-drl.toml
as_service /opt/alara-edge/venv/bin/alara-edge check-config /etc/alara-edge/alara-edge.toml

install -m 0644 "systemd/$unit" "/etc/systemd/system/$unit"
systemctl daemon-reload
systemctl enable "$unit"
if [ -z "$RELEASE_SWITCHED" ] && [ "$(state)" = "$before" ] && systemctl is-active --quiet "$unit"; then
    echo "nothing changed: ${unit%.service} was not restarted"
else
    systemctl restart "$unit"
fi
echo "${unit%.service} is running: systemctl status ${unit%.service}; journalctl -u ${unit%.service} -f"
