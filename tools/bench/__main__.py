"""``python -m tools.bench memory USERS EVENTS OUT`` and ``python -m tools.bench scale USERS HISTORY
MEASURED SEED OUT``: the memory measurement and one scale point, each in a fresh interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from tools.bench.memory import bench_memory

# ---------------------------------------------------------------------------------------------
# child entry point (the memory measurement in a fresh interpreter)


def _child_main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "memory":
        result = bench_memory(int(argv[1]), int(argv[2]))
        Path(argv[3]).write_bytes(orjson.dumps(result))
        return 0
    if len(argv) == 6 and argv[0] == "scale":
        from tools.bench.scale import bench_scale_point

        result = bench_scale_point(int(argv[1]), argv[2], int(argv[3]), int(argv[4]))
        Path(argv[5]).write_bytes(orjson.dumps(result))
        return 0
    return 2


if __name__ == "__main__":  # pragma: no cover - run by _memory_in_subprocess
    sys.exit(_child_main(sys.argv[1:]))
