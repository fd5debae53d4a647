#!/bin/sh
# Install the Debian packages alara-edge's tests use, if missing (needs root or sudo):
# mosquitto (real MQTT broker), dcmtk (storescu/echoscu/dcmdump), chromium (console tests),
# openssl (test certificates), postgresql (central receiver on PostgreSQL), sqlite3 (the README's backup).
# With arguments, installs those packages instead.
set -eu
if [ $# -gt 0 ]; then
    wanted="$*"
else
    wanted=""
    have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
    have mosquitto || wanted="$wanted mosquitto mosquitto-clients"
    have mosquitto_pub || wanted="$wanted mosquitto-clients"
    have storescu || wanted="$wanted dcmtk"
    have chromium || wanted="$wanted chromium"
    have openssl || wanted="$wanted openssl"
    have sqlite3 || wanted="$wanted sqlite3"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || wanted="$wanted postgresql"
fi
[ -z "$wanted" ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "missing Debian packages:$wanted (run as root or install sudo)" >&2; exit 1; fi
echo "installing Debian packages:$wanted" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $wanted >/dev/null
