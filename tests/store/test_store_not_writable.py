"""A store file the agent's user may not write (a backup restored as root) stops the start with one clear
line; before, the agent started, told modalities Success, reported itself healthy and never stored a thing."""
import json
import os
import shutil
import subprocess

import pytest

from agent.store import Store
from tests.conftest import agent_cmd, agent_env, free_port

DROP = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_read_only_store_file_is_refused_at_start(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot drop its right to write any file")
    db = tmp_path / "var" / "alara-edge.sqlite"
    Store.open(db).close()
    db.chmod(0o444)  # e.g. owned by root after `cp /backup/alara-edge.sqlite ...`
    config = tmp_path / "a.toml"
    config.write_text(f'[dicom]\nport = {free_port()}\n[console]\nport = {free_port()}\n[mqtt]\nenabled = false\n'
                      f'[store]\npath = "{db}"\nspool_dir = "{tmp_path}/var/spool"\n')
    prefix = DROP if os.geteuid() == 0 else []
    result = subprocess.run(prefix + agent_cmd("run", "-c", str(config)), cwd=tmp_path, env=agent_env(),
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    failed = [json.loads(line) for line in result.stdout.splitlines() + result.stderr.splitlines()
              if '"agent_start_failed"' in line]
    assert len(failed) == 1 and "not writable" in failed[0]["error"]
