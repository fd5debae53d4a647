#!/bin/sh
# Install alara-edge into ./.venv and run it in the foreground with embedded defaults:
# DICOM SCP on port 11112 (AE title ALARA_EDGE), SQLite store under ./var/, the MQTT broker on
# 127.0.0.1:1883 if one is reachable (buffering if not), the console on http://127.0.0.1:8377/.
#   sh start.sh                 # the agent
#   sh start.sh --demo          # ... plus a simulated modality sending a dose report every 10 s
#   sh start.sh -c my.toml      # with a configuration file (see config/alara-edge.example.toml)
set -eu
cd "$(dirname "$0")"
. ./tools/venv.sh
exec .venv/bin/alara-edge run "$@"
