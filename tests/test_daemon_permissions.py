"""`alara-edge run` on a store directory its user may not write says what to do, not only "Permission denied"."""
import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import agent_cmd, agent_env, free_port

DROP = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_store_directory_the_agent_may_not_write_gives_a_hint(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot drop its right to write any file")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    config = tmp_path / "a.toml"
    config.write_text(f'[dicom]\nport = {free_port()}\n[console]\nport = {free_port()}\n[mqtt]\nenabled = false\n'
                      f'[store]\npath = "{locked}/var/alara-edge.sqlite"\nspool_dir = "{locked}/var/spool"\n')
    prefix = DROP if os.geteuid() == 0 else []
    result = subprocess.run(prefix + agent_cmd("run", "-c", str(config)), cwd=tmp_path, env=agent_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    failed = [json.loads(line) for line in result.stdout.splitlines() + result.stderr.splitlines()
              if '"agent_start_failed"' in line]
    assert len(failed) == 1 and "Permission denied" in failed[0]["error"]
    assert "[store] path" in failed[0]["hint"]
