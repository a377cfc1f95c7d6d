"""Read back what an offline W&B run logged, from its ``run-*.wandb`` transaction log.

wandb ships no Python reader for this file. It is LevelDB's log format: a 7-byte file header (":W&B",
a 2-byte magic, a version byte), then 32 KiB blocks of records, each with a 7-byte header (crc32,
length, type: FULL, FIRST, MIDDLE, LAST) and a payload; payloads are wandb's protobuf ``Record``s.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def run_files(run_dir) -> list[Path]:
    """The ``run-*.wandb`` logs in a run folder, oldest first (each process of a resumed run adds one)."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def _payloads(data: bytes):
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (missing :W&B header)")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:
            continue
        if zlib.crc32(bytes([kind]) + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"corrupt record at byte {pos - HEADER - length}")
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload


@dataclass
class WandbRun:
    """The parts of a run that dashboards group and plot by."""

    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(path: str | Path) -> WandbRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = WandbRun()
    for payload in _payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.project, run.group, run.job_type = (
                record.run.project,
                record.run.run_group,
                record.run.job_type,
            )
            run.tags = list(record.run.tags)
            run.config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run.config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(u): json.loads(u.value_json) for u in record.summary.update})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
