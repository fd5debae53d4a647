"""The README's configuration table names every [central] key, as it promises for every section."""
from pathlib import Path

from agent.config import CentralConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_names_every_central_key():
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `[central]`"))
    assert [k for k in CentralConfig.model_fields if f"`{k}`" not in row] == []
