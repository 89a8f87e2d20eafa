"""The state store: records and their two halves, the SQLite store on a real file (its
modes, a damaged or foreign file, a server killed with SIGKILL in a burst of writes),
and the MemoryStore beside it, held to the same behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kernelyard.errors import StoreError
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.store import KernelRecord, MemoryStore, SqliteStore, StateStore
from kernelyard.store.sqlite import FILE_NAME
from kernelyard.wire import ConnectionInfo

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

KEY = b"a-secret-hmac-key-0123456789abcd"
CURVE = (b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", b"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def record(kernel_id: str = "k1", **changes: object) -> KernelRecord:
    info = ConnectionInfo(
        key=KEY, shell_port=5001, iopub_port=5002, stdin_port=5003, control_port=5004,
        hb_port=5005, kernel_name="python3", curve_publickey=CURVE[0], curve_secretkey=CURVE[1],
    )  # fmt: skip
    attach = AttachInfo("kernelyard-slurm", kernel_id, info, {"job_id": "7", "node": "n1"})
    made = KernelRecord(
        id=kernel_id,
        kernel_type="python3",
        attach=attach,
        cwd="/home/u/notebooks",
        env={"KERNEL_USERNAME": "u"},
        created=datetime(2026, 12, 8, 4, 0, tzinfo=UTC),
        last_activity=datetime(2026, 12, 8, 4, 5, 6, 789, tzinfo=UTC),
        reason="",
        owner="server-a",
    )
    return made.with_(**changes) if changes else made


@asynccontextmanager
async def opened(kind: str, tmp_path: Path) -> AsyncIterator[StateStore]:
    store: StateStore = MemoryStore() if kind == "memory" else await SqliteStore.open(tmp_path)
    try:
        yield store
    finally:
        await store.aclose()


def test_a_record_splits_into_a_public_half_and_its_keys() -> None:
    made = record()
    public, secret = made.public(), made.secret()
    assert KEY.decode() not in json.dumps(public)
    assert CURVE[1].decode() not in json.dumps(public)
    assert secret == {"format": 1, "key": KEY.decode(), "curve_publickey": CURVE[0].decode(),
                      "curve_secretkey": CURVE[1].decode()}  # fmt: skip
    assert KernelRecord.from_halves(public, secret) == made


@pytest.mark.parametrize(
    ("public", "secret", "message"),
    [
        ({"format": 2}, {"format": 1}, "record has format 2; this kernelyard reads 1"),
        ({"format": 1}, {"format": None}, "keys has format None"),
        ({"format": 1, "id": "k"}, {"format": 1}, "'k': its record cannot be read: 'kernel_type'"),
        ({**record().public(), "id": 5}, record().secret(), "id must be a string"),
        ({**record().public(), "created": 5}, record().secret(), "a time must be"),
        (record().public(), {"format": 1, "key": 7}, "cannot be read"),
    ],
)
def test_a_record_this_version_cannot_read_is_a_store_error(
    public: dict[str, object], secret: dict[str, object], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        KernelRecord.from_halves(public, secret)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_put_get_replace_delete(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        assert await store.records() == []
        assert await store.get("k1") is None
        await store.put(record("k1"))
        await store.put(record("k2"))
        assert await store.get("k1") == record("k1")
        await store.put(record("k1", reason="culled", owner=""))
        assert await store.get("k1") == record("k1", reason="culled", owner="")
        assert [r.id for r in await store.records()] == ["k1", "k2"]
        await store.delete("k1")
        await store.delete("k1")  # again: nothing happens
        assert [r.id for r in await store.records()] == ["k2"]


async def test_the_sqlite_files_are_the_users_alone_and_the_keys_in_one_column(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "state"
    old = os.umask(0o022)  # a umask that would leave a new file readable by all
    try:
        store = await SqliteStore.open(folder)
        await store.put(record())
    finally:
        os.umask(old)
    try:
        assert folder.stat().st_mode & 0o777 == 0o700
        for name in (FILE_NAME, f"{FILE_NAME}-wal", f"{FILE_NAME}-shm"):
            assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        await store.aclose()
    with sqlite3.connect(folder / FILE_NAME) as db:
        public, secret = db.execute("SELECT record, secret FROM kernels").fetchone()
    assert KEY.decode() not in public
    assert KEY.decode() in secret
    os.chmod(folder, 0o755)  # loosened by someone: tightened again at open
    await (await SqliteStore.open(folder)).aclose()
    assert folder.stat().st_mode & 0o777 == 0o700


async def test_a_file_that_is_not_our_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match=r"cannot be opened: file is not a database"):
        await SqliteStore.open(tmp_path)
    other = tmp_path / "newer"
    other.mkdir()
    with sqlite3.connect(other / FILE_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="has format 99; this kernelyard reads 1"):
        await SqliteStore.open(other)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(StoreError, match="cannot be used"):
        await SqliteStore.open(blocked)


async def test_an_unreadable_record_is_left_out_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        await store.put(record("good"))
        with sqlite3.connect(tmp_path / FILE_NAME) as db:
            db.execute("INSERT INTO kernels VALUES ('bad', '{\"format\": 7}', '{}')")
        assert [r.id for r in await store.records()] == ["good"]
        assert "kernel bad left out: a kernel's record has format 7" in caplog.text
    finally:
        await store.aclose()
    with pytest.raises(StoreError, match="is closed"):
        await store.get("good")


#: A server's writes, as fast as they go: put or delete, chosen by a seeded random
#: generator, each acknowledged on stdout once the store returned.
BURST = textwrap.dedent(
    """
    import random, sys, anyio
    sys.path.insert(0, sys.argv[3])
    from tests.store.test_store import record
    from kernelyard.store import SqliteStore

    async def main():
        store = await SqliteStore.open(sys.argv[1])
        rng = random.Random(int(sys.argv[2]))
        for op in range(100_000):
            kernel_id = f"k{rng.randrange(200)}"
            if rng.random() < 0.6:
                await store.put(record(kernel_id, reason=f"op {op}"))
            else:
                await store.delete(kernel_id)
            print(op, flush=True)

    anyio.run(main)
    """
)


def expected_after(seed: int, ops: int) -> dict[str, str]:
    """What the store holds after the first ``ops`` operations of BURST(seed)."""
    import random

    rng, state = random.Random(seed), {}
    for op in range(ops):
        kernel_id = f"k{rng.randrange(200)}"
        if rng.random() < 0.6:
            state[kernel_id] = f"op {op}"
        else:
            state.pop(kernel_id, None)
    return state


@pytest.mark.integration
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_sigkill_in_a_burst_of_writes_loses_nothing_acknowledged(
    tmp_path: Path, seed: int
) -> None:
    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen(
        [sys.executable, "-c", BURST, str(tmp_path), str(seed), str(root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    acknowledged = -1
    try:
        target = 150 + 97 * seed  # a different moment in each run
        while acknowledged < target:
            line = writer.stdout.readline()
            assert line, "the writer stopped"
            acknowledged = int(line)
        writer.send_signal(signal.SIGKILL)  # in the middle of the next writes
        writer.wait(timeout=10)
        for line in writer.stdout:  # what it acknowledged before it died
            acknowledged = int(line)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
    done = acknowledged + 1
    store = await SqliteStore.open(tmp_path)
    try:
        held = {r.id: r.reason for r in await store.records()}
    finally:
        await store.aclose()
    # Every acknowledged write is there, and at most the one in flight besides.
    assert held in (expected_after(seed, done), expected_after(seed, done + 1))
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
