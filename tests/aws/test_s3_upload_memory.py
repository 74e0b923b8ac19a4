"""Memory of a streamed multipart upload stays bounded for a file many times the part size.

The upload runs in a child process so its peak RSS is its own (the moto server lives in the test
process and keeps the object in memory).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
FILE_MIB = 160  # 20 parts of 8 MiB

CHILD = r"""
import json, sys, io, tracemalloc
import psutil
from clientes_ingest.s3 import S3Storage
from clientes_ingest.settings import load_settings

def peak():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the forked pytest.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

storage = S3Storage.from_settings(load_settings())
storage.store(io.BytesIO(b"warm-up\n"), "warmup.dat")  # imports, client, connection pool
before = psutil.Process().memory_info().rss  # current, not peak: imports peaked higher than they stay
tracemalloc.start()
with open(sys.argv[1], "rb") as handle:
    stored = storage.store(handle, "CLIENTES_IN_0925.dat")
traced_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"before": before, "after": peak(), "traced_peak": traced_peak, "size": stored.size,
                  "uri": stored.uri}))
"""


def test_upload_peak_memory_is_bounded(tmp_path: Path, aws_bucket: str, aws_s3_client: Any) -> None:
    path = tmp_path / "big.dat"
    line = b"Maria|Gomez|45678901|Activo|11/13/2021|true|false\n"
    block = line * (MIB // len(line) + 1)
    with path.open("wb") as out:
        for _ in range(FILE_MIB):
            out.write(block[:MIB])
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    growth = report["after"] - report["before"]
    assert report["size"] == FILE_MIB * MIB
    head = aws_s3_client.head_object(Bucket=aws_bucket, Key=report["uri"].split("/", 3)[3])
    assert head["ContentLength"] == FILE_MIB * MIB
    # One 8 MiB part buffered, one 8 MiB read block, botocore's copy for signing/checksums: well under
    # 64 MiB, where reading the file whole would need 160 MiB.
    assert growth < 64 * MIB, f"upload grew peak RSS by {growth / MIB:.0f} MiB"
    # Python-level allocations during the upload: at least one part (so the probe sees the buffer),
    # at most a few.
    assert 8 * MIB <= report["traced_peak"] < 48 * MIB, report
    print(
        f"{FILE_MIB} MiB upload: RSS growth {growth / MIB:.1f} MiB, traced peak {report['traced_peak'] / MIB:.1f} MiB"
    )
