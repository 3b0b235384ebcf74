"""The committed stack/v1 code is exactly what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
    )
    fresh = tmp_path / "stack" / "v1"
    committed = ROOT / "stack" / "v1"
    fresh_files = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_files = sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi"))
    assert fresh_files == committed_files
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, fresh_files, shallow=False)
    assert mismatch == [] and errors == [], f"regenerate with scripts/gen_proto.py: {mismatch}"
