"""Regenerate stack/v1 from proto/stack/v1 (messages, gRPC stubs and .pyi stubs).

Run: python scripts/gen_proto.py [--out DIR]
The output is committed; tests/unit/test_generated_code.py regenerates into a
temporary folder and fails on any difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def generate(out: Path) -> None:
    from grpc_tools import protoc  # dev dependency

    sources = (PROTO_ROOT / "stack" / "v1").glob("*.proto")
    protos = sorted(str(path.relative_to(PROTO_ROOT)) for path in sources)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out / "stack" / "v1" / "__init__.py"
    init.write_text('"""Generated wire code; regenerate with scripts/gen_proto.py."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT)
    ns = parser.parse_args()
    generate(ns.out)


if __name__ == "__main__":
    sys.exit(main())
