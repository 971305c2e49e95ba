"""One owner per scan file and per instrument connection (microct.locks), across real processes."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from datetime import datetime

import pytest

from microct import locks
from microct.config import parse_config
from microct.errors import LockedError, MicroCTError
from microct.locks import (
    OwnerLock,
    connection_key,
    instrument_locks,
    scan_file_lock,
    scan_lock_path,
)

# A child process that takes a lock, says "ready" on stdout, holds it until its stdin closes, then releases.
HOLDER = """
import json, sys
from microct.config import parse_config
from microct.locks import instrument_locks, scan_file_lock
kind, where = sys.argv[1], sys.argv[2]
if kind == "scan":
    lock = scan_file_lock(where)
else:
    lock = instrument_locks(parse_config(json.loads(sys.argv[3])), folder=where)
lock.acquire()
print("ready", flush=True)
sys.stdin.read()
lock.release()
"""


def start_holder(*args: str) -> subprocess.Popen:
    """A child holding a lock (see HOLDER), once it says so (30 s at most: a loaded machine)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if said != ["ready\n"]:
        proc.kill()
        raise AssertionError(f"the holder did not take its lock: {said} {proc.communicate()[1]}")
    return proc


def stop_holder(proc: subprocess.Popen) -> None:
    proc.communicate(timeout=30)  # closes its stdin: it releases and exits
    assert proc.returncode == 0


def config_with(scan_data, **connections: str | None):
    """The small simulated scan with these roles' connections (parsing does not load the drivers)."""
    return parse_config(scan_data({role: {"connection": value} for role, value in connections.items()}))


# -- scan files, two processes ---------------------------------------------------------------------------------

def test_a_second_process_is_refused_naming_the_holder_until_it_releases(tmp_path, caplog):
    output = tmp_path / "same.nxs"
    holder = start_holder("scan", str(output))
    try:
        with pytest.raises(LockedError) as refused:
            scan_file_lock(output).acquire()
    finally:
        stop_holder(holder)
    message = str(refused.value)
    assert f"scan file {output}" in message and f"pid {holder.pid} " in message
    assert socket.gethostname() in message and "--force does not take" in message
    assert refused.value.holder["pid"] == holder.pid and refused.value.path == scan_lock_path(output)
    assert isinstance(refused.value, MicroCTError) and isinstance(refused.value, BlockingIOError)
    assert not scan_lock_path(output).exists()  # released: removed
    with caplog.at_level(logging.WARNING, logger="microct.locks"), scan_file_lock(output) as lock:
        assert lock.held
    assert not caplog.records  # a released lock is not stale


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    output = tmp_path / "scan.nxs"
    holder = start_holder("scan", str(output))
    holder.kill()  # SIGKILL: no clean-up; the kernel drops the flock
    holder.communicate(timeout=30)
    assert scan_lock_path(output).exists()
    with caplog.at_level(logging.WARNING, logger="microct.locks"), scan_file_lock(output):
        record = json.loads(scan_lock_path(output).read_text())
    assert record["pid"] == os.getpid()
    [warning] = [r.getMessage() for r in caplog.records]
    assert "stale lock" in warning and f"pid {holder.pid} " in warning
    assert f"running `{os.path.basename(sys.executable)} -c scan {output}`" in warning
    assert not scan_lock_path(output).exists()


def test_an_instrument_held_by_another_process_is_refused_naming_the_connection(tmp_path, scan_data):
    port = tmp_path / "ttyFAKE0"
    port.touch()
    folder = tmp_path / "locks"
    holder = start_holder("instruments", str(folder), json.dumps(scan_data({"source": {"connection": str(port)}})))
    try:
        with pytest.raises(LockedError) as refused:
            instrument_locks(config_with(scan_data, detector=str(port)), folder).acquire()
    finally:
        stop_holder(holder)
    message = str(refused.value)
    assert f"instrument connection serial:{port} (detector: sim-detector at '{port}')" in message
    assert f"pid {holder.pid} " in message and "Two scans cannot drive one instrument" in message
    assert list(folder.iterdir()) == []


# -- one process -----------------------------------------------------------------------------------------------

def test_the_record_names_the_owner_and_release_removes_the_file(tmp_path):
    output = tmp_path / "scan.nxs"
    with scan_file_lock(output) as lock:
        record = json.loads((tmp_path / "scan.nxs.lock").read_text())
        with pytest.raises(LockedError, match=f"pid {os.getpid()} "):  # one owner, in this process too
            OwnerLock(lock.path, "again").acquire()
        with pytest.raises(MicroCTError, match="already held"):
            lock.acquire()
    assert not lock.held and not lock.path.exists()
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["user"]
    assert record["what"] == f"scan file {output}" and record["command"]
    assert datetime.fromisoformat(record["started"]).tzinfo is not None
    lock.release()  # released twice: nothing


def test_a_lock_released_between_our_open_and_our_lock_is_opened_again(tmp_path, monkeypatch):
    path = tmp_path / "scan.nxs.lock"
    other = OwnerLock(path, "scan file").acquire()
    real, calls = locks._lock_fd, []

    def other_releases_first(fd: int) -> bool:  # we opened other's file; it releases (removes it) before we lock
        calls.append(fd)
        if len(calls) == 1:
            other.release()
        return real(fd)

    monkeypatch.setattr(locks, "_lock_fd", other_releases_first)
    mine = OwnerLock(path, "scan file").acquire()
    monkeypatch.undo()
    assert len(calls) == 2  # the first, on the removed file, was given up
    assert os.path.samestat(os.fstat(mine._fd), os.stat(path))
    with pytest.raises(LockedError):  # we hold the file the path names: a third is refused
        OwnerLock(path, "scan file").acquire()
    mine.release()


def test_a_lock_file_replaced_between_open_and_lock_is_opened_again(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    path.touch()
    real, calls = locks._lock_fd, []

    def replace_first(fd: int) -> bool:
        calls.append(fd)
        if len(calls) == 1:
            (tmp_path / "new").touch()
            os.replace(tmp_path / "new", path)  # another process put a new lock file in its place
        return real(fd)

    monkeypatch.setattr(locks, "_lock_fd", replace_first)
    with OwnerLock(path, "x") as lock:
        assert len(calls) == 2 and os.path.samestat(os.fstat(lock._fd), os.stat(path))


def test_a_lock_file_replaced_every_time_gives_up(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    real = locks._lock_fd

    def remove(fd: int) -> bool:
        path.unlink()
        return real(fd)

    monkeypatch.setattr(locks, "_lock_fd", remove)
    with pytest.raises(MicroCTError, match=f"replaced {locks.ATTEMPTS} times"):
        OwnerLock(path, "x").acquire()


def test_racing_owners_never_hold_one_lock_together(tmp_path):
    path, guard, state = tmp_path / "race.lock", threading.Lock(), {"inside": 0, "most": 0, "taken": 0}

    def contend() -> None:
        for _ in range(150):
            try:
                lock = OwnerLock(path, "race").acquire()
            except LockedError:
                continue
            with guard:
                state["inside"] += 1
                state["most"] = max(state["most"], state["inside"])
                state["taken"] += 1
            os.stat(path)  # let the others run while we hold it
            with guard:
                state["inside"] -= 1
            lock.release()

    threads = [threading.Thread(target=contend) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert state["most"] == 1 and state["taken"] >= 150 and not path.exists()


# -- instrument connections ------------------------------------------------------------------------------------

@pytest.mark.parametrize("one, other", [
    ("socket://Tube.Lab:7001", "TCPIP::tube.lab::7001::socket"),
    ("TCPIP0::192.168.1.5::50000::SOCKET", "rfc2217://192.168.1.5:50000"),
    ("tcpip::192.168.1.5::instr", "TCPIP0::192.168.1.5::inst0::INSTR"),
    ("GPIB::5::INSTR", "gpib0::5::instr"),
    ("COM3", "\\\\.\\com3"),
    ("spy:///dev/ttyS0?file=log.txt", "ASRL/dev/ttyS0::INSTR"),
])
def test_spellings_of_one_resource_have_one_key(one, other):
    assert connection_key(one) == connection_key(other) is not None


@pytest.mark.parametrize("one, other", [
    ("socket://tube.lab:7001", "socket://tube.lab:7002"),
    ("BL7:XRAY:", "bl7:xray:"),  # EPICS names are case-sensitive: as given
    ("GPIB::5::INSTR", "GPIB::6::INSTR"),
    ("/dev/ttyS0", "/dev/ttyS1"),
])
def test_different_resources_have_different_keys(one, other):
    assert connection_key(one) != connection_key(other)


@pytest.mark.parametrize("connection", [None, "", "  ", "loop://"])
def test_in_process_connections_take_no_lock(connection):
    assert connection_key(connection) is None


def test_one_port_by_two_spellings_collides_and_two_ports_do_not(tmp_path, scan_data):
    ports = [tmp_path / "ttyFAKE0", tmp_path / "ttyFAKE1"]
    for port in ports:
        port.touch()
    (tmp_path / "by-id").mkdir()
    alias = tmp_path / "by-id" / "usb-FTDI_A1"
    alias.symlink_to(ports[0])
    folder = tmp_path / "locks"
    with instrument_locks(config_with(scan_data, rotation=str(ports[0])), folder):
        with instrument_locks(config_with(scan_data, rotation=str(ports[1])), folder) as other:
            assert other.held
        with pytest.raises(LockedError, match=f"rotation: sim-axis at '{alias}'.*pid {os.getpid()} "):
            instrument_locks(config_with(scan_data, rotation=str(alias)), folder).acquire()


def test_instrument_locks_are_all_or_nothing_and_shared_by_roles_on_one_connection(tmp_path, scan_data):
    folder = tmp_path / "locks"
    both = config_with(scan_data, source="socket://127.0.0.1:7001", rotation="BL7:MOT:",
                       sample_out="BL7:MOT:")
    wanted = instrument_locks(both, folder)
    assert list(wanted.locks) == ["name:BL7:MOT:", "tcp:127.0.0.1:7001"]  # sorted; the axes share one
    assert "rotation: sim-axis at 'BL7:MOT:'; sample_out: sim-axis at 'BL7:MOT:'" in wanted.locks[
        "name:BL7:MOT:"].what
    with instrument_locks(config_with(scan_data, detector="TCPIP::127.0.0.1::7001::SOCKET"), folder):
        with pytest.raises(LockedError, match="tcp:127.0.0.1:7001"):
            wanted.acquire()
        assert not wanted.held and len(list(folder.iterdir())) == 1  # the first one taken was given back
    with wanted:
        assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["name", "tcp"]
    assert list(folder.iterdir()) == []


def test_in_process_simulators_take_no_lock(tmp_path, scan_data):
    none = instrument_locks(parse_config(scan_data()), tmp_path / "locks")
    assert none.locks == {}
    with none:
        pass
    assert not (tmp_path / "locks").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_the_instrument_lock_folder_is_shared_by_every_user(tmp_path, scan_data):
    folder = tmp_path / "locks"
    with instrument_locks(config_with(scan_data, source="/dev/ttyFAKE9"), folder) as held:
        [lock] = held.locks.values()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o1777
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o666
        assert lock.path.name.startswith("serial-dev-ttyFAKE9-")


def test_the_lock_folder_can_be_moved_by_the_environment(monkeypatch, tmp_path):
    """A test suite keeps its instrument locks to itself (tests/conftest.py): MICROCT_LOCK_FOLDER."""
    from microct.locks import default_lock_folder

    monkeypatch.setenv("MICROCT_LOCK_FOLDER", str(tmp_path / "suite-locks"))
    assert default_lock_folder() == tmp_path / "suite-locks"
    monkeypatch.delenv("MICROCT_LOCK_FOLDER")
    assert default_lock_folder().name == "microct-locks"
