"""The guide's examples run as written."""

import re
import runpy
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def _example(name: str) -> str:
    text = GUIDE.read_text()
    match = re.search(rf"<!-- guide-example: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert match, f"example {name} not found in the guide"
    return match.group(1)


def test_prune_your_own_model_runs(tmp_path, capsys):
    script = tmp_path / "example.py"
    script.write_text(_example("prune-your-own-model"))
    runpy.run_path(str(script), run_name="__main__")
    assert "structures," in capsys.readouterr().out
