"""One owner per scan file and per instrument: exclusive advisory locks held for the life of a scan.

An :class:`OwnerLock` is a lock file holding a JSON record of its owner (pid, host, user, command, what,
start time) and an exclusive, non-blocking OS lock on it: ``flock`` on Linux and macOS, ``msvcrt.locking``
on Windows (one byte far past the record, so that others can still read who holds it; untested there).
The OS drops that lock when its process dies, however it dies, so a lock file nobody holds is stale: the
next owner takes it over and logs a warning naming the dead owner. Release removes the file.

- :func:`scan_file_lock`: ``SCAN.nxs.lock`` beside the scan; whoever holds it owns the scan file, its
  journal (``SCAN.nxs.journal``), its pause file and a resume's set-aside pair (``SCAN.nxs.interrupted*``).
- :func:`instrument_locks`: one lock per shared connection of a configuration (serial port, TCP
  endpoint, VISA resource, EPICS PV prefix, a plug-in's connection string), in one folder every user of
  the computer shares (:func:`default_lock_folder`).

The locks are advisory and local: they keep microct processes on one computer (or sharing one folder,
for scan files on a network share that supports ``flock``) apart; they do not stop another program, nor
a process on another computer talking to the same network instrument.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import json
import logging
import os
import re
import shlex
import socket
import stat
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from microct.config import InstrumentConfig, ScanConfig
from microct.errors import LockedError, MicroCTError

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

log = logging.getLogger(__name__)

LOCK_FOLDER_NAME = "microct-locks"
ATTEMPTS = 50
"""How many times in a row the lock file may be removed or replaced under us before we give up."""
RECORD_READS = 10
"""Refused: how many times to re-read a record its owner is still writing (RECORD_RETRY_S apart)."""
RECORD_RETRY_S = 0.01
_WINDOWS_LOCK_OFFSET = 1 << 30  # the byte locked on Windows: far past the record, which others must read
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)  # never write through a symbolic link planted in a shared folder
_BINARY = getattr(os, "O_BINARY", 0)


def _lock_fd(fd: int) -> bool:
    """Take the exclusive lock of ``fd`` without waiting; False if another open file holds it."""
    if sys.platform == "win32":
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as error:
            if error.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)):
                return False
            raise
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _close(fd: int) -> None:
    """Close ``fd``, dropping its lock (on POSIX closing does; on Windows unlock first, if locked)."""
    if sys.platform == "win32":
        try:
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass  # it was not locked
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """True if ``path`` still names the file open as ``fd`` (not removed nor replaced since we opened it)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (named.st_dev, named.st_ino)


def _read_record(fd: int) -> dict[str, Any] | None:
    """The owner record in the file: None if the file is empty, {} if it is not a record."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while len(data) < 65536 and (chunk := os.read(fd, 65536)):
        data += chunk
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:  # the first JSON value: a shorter record written over a longer one leaves its tail until truncated
        record, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode("utf-8")
    os.lseek(fd, 0, os.SEEK_SET)
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])
    os.ftruncate(fd, len(data))


def _alive_here(record: dict[str, Any]) -> bool:
    """False if the record's process is known to be gone (same host, POSIX, no such pid)."""
    pid = record.get("pid")
    if sys.platform == "win32" or record.get("host") != socket.gethostname() or not isinstance(pid, int):
        return True  # cannot tell (on Windows os.kill(pid, 0) would send a Ctrl-C)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def describe_holder(record: dict[str, Any] | None) -> str:
    """An owner record in words: ``pid 123 on host lab-pc (user ana), running `microct scan ...` since ...``."""
    if not record:
        return "a process that has not written (or wrote an unreadable) owner record"
    return (f"pid {record.get('pid', '?')} on host {record.get('host', '?')} (user {record.get('user', '?')}), "
            f"running `{record.get('command', '?')}` since {record.get('started', '?')}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no password entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def _command() -> str:
    """This process's command line, the program by its name (``microct scan a.toml``, ``python -c ...``)."""
    argv = sys.argv or [""]
    program = [Path(sys.executable).name or "python", "-c"] if argv[0] == "-c" else [Path(argv[0]).name or "python"]
    return shlex.join([*program, *argv[1:]])


def _shared_folder(folder: Path) -> None:
    """Create ``folder`` for every user of the computer (POSIX: sticky and world-writable, like /tmp)."""
    try:
        folder.mkdir(mode=0o777, parents=True, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode):
            raise MicroCTError(f"lock folder {folder} is not a folder (a symbolic link or a file): remove it")
        if sys.platform != "win32" and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o1777:
            os.chmod(folder, 0o1777)
    except OSError as error:
        raise MicroCTError(f"cannot prepare the lock folder {folder}: {error.strerror}") from None


class OwnerLock:
    """An exclusive, non-blocking lock on the file ``path`` for ``what`` (named in messages).

    ``acquire()`` (or ``with``) takes it, or raises LockedError naming ``what``, the live holder (pid, host,
    user, command, start time) and ``advice`` (what to do). A lock file nobody holds is stale: it is taken
    over, with a warning naming the owner that left it. ``release()`` removes the file (where the OS does
    not allow that, empties it). ``shared``: the file lives in a folder several users share (created
    sticky and world-writable; the lock file readable and writable by all). MicroCTError if the file
    cannot be opened or keeps being replaced while we take it. A process holds a lock once: a second
    OwnerLock on the same path in the same process is refused like another process.
    """

    def __init__(self, path: str | Path, what: str, advice: str = "", *, shared: bool = False,
                 command: str | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self.advice = advice
        self.shared = shared
        self.command = _command() if command is None else command
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"OwnerLock({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """True between a successful acquire() and release()."""
        return self._fd is not None

    def acquire(self) -> OwnerLock:
        """Take the lock (see the class); returns self."""
        if self._fd is not None:
            raise MicroCTError(f"{self.what}: this lock ({self.path}) is already held")
        if self.shared:
            _shared_folder(self.path.parent)
        for _ in range(ATTEMPTS):
            fd = self._open()
            try:
                taken = self._take(fd)
            except BaseException:
                _close(fd)
                raise
            if taken:
                self._fd = fd
                return self
            _close(fd)  # released or replaced between our open and our lock: open the file the path names now
        raise MicroCTError(f"cannot lock {self.what}: its lock file {self.path} was removed or replaced "
                           f"{ATTEMPTS} times in a row while we took it (another program is deleting it?)")

    def release(self) -> None:
        """Remove the lock file and drop the lock; nothing if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                try:  # while still locked: whoever opened it meanwhile finds it gone (_same_file) and retries
                    os.unlink(self.path)
                except OSError:  # Windows (an open file stays), a sticky folder (another user's file)
                    os.ftruncate(fd, 0)  # the next owner finds no record, hence no stale owner to report
        except OSError as error:
            log.debug("releasing %s: %s", self.path, error)
        finally:
            _close(fd)
        if sys.platform == "win32":
            try:  # fails while another process has it open: it is then theirs
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> OwnerLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _open(self) -> int:
        # Open an existing file without O_CREAT: Linux's protected_regular refuses O_CREAT on another
        # user's file in a sticky folder, which is exactly a stale lock another user left.
        flags = os.O_RDWR | _NO_FOLLOW | _BINARY
        for _ in range(ATTEMPTS):
            try:
                return os.open(self.path, flags)
            except FileNotFoundError:
                pass
            except OSError as error:
                raise self._cannot_open(error) from None
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666 if self.shared else 0o644)
            except FileExistsError:
                continue  # created by another process meanwhile: open theirs
            except OSError as error:
                raise self._cannot_open(error) from None
            if self.shared and hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666)  # whatever the umask: another user must be able to take it over
            return fd
        raise MicroCTError(f"cannot open the lock file {self.path} of {self.what}: it keeps appearing and "
                           f"disappearing")

    def _cannot_open(self, error: OSError) -> MicroCTError:
        hint = " (a symbolic link: refused)" if error.errno == errno.ELOOP else ""
        return MicroCTError(f"cannot open the lock file {self.path} of {self.what}: {error.strerror}{hint}")

    def _take(self, fd: int) -> bool:
        """Lock ``fd`` and write our record; False if the path no longer names that file (try again)."""
        if not _lock_fd(fd):
            raise self._refusal(fd)
        if not _same_file(fd, self.path):
            return False
        previous = _read_record(fd)
        if previous is not None:
            log.warning("taking over the stale lock %s of %s: its owner, %s, ended without releasing it",
                        self.path, self.what, describe_holder(previous))
        _write_record(fd, {"pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
                           "command": self.command, "what": self.what,
                           "started": datetime.now().astimezone().isoformat(timespec="seconds")})
        return True

    def _refusal(self, fd: int) -> LockedError:
        record = _read_record(fd)
        for _ in range(RECORD_READS):  # the holder may be between taking the lock and writing its record
            if record and _alive_here(record):
                break
            time.sleep(RECORD_RETRY_S)
            record = _read_record(fd)
        advice = f" {self.advice}" if self.advice else ""
        return LockedError(f"{self.what} is in use by another process: {describe_holder(record)} "
                           f"(lock file {self.path}).{advice}", path=self.path, holder=record or None)


# -- scan files ------------------------------------------------------------------------------------------------

SCAN_ADVICE = ("Wait for that scan to end, or stop it (Ctrl-C in its terminal, or kill its pid: its file is "
               "kept, marked aborted); --force does not take a file from a live scan. To scan now, write to "
               "another file (-o).")


def scan_lock_path(output: str | Path) -> Path:
    """The lock file of a scan file: ``SCAN.nxs.lock`` beside it (symbolic links resolved)."""
    path = Path(os.path.realpath(output))
    return path.with_name(path.name + ".lock")


def scan_file_lock(output: str | Path) -> OwnerLock:
    """The lock (not yet taken) of the scan file ``output``, its journal and a resume's set-aside files."""
    path = Path(os.path.realpath(output))
    return OwnerLock(scan_lock_path(output), f"scan file {path}", SCAN_ADVICE)


# -- instrument connections ------------------------------------------------------------------------------------

INSTRUMENT_ADVICE = "Two scans cannot drive one instrument: wait for that scan to end, or stop it."
_RESOURCE_CLASSES = {"INSTR", "SOCKET", "RAW", "BACKPLANE", "INTFC", "SERVANT", "MEMACC"}
_COM_PORT = re.compile(r"(?:\\\\\.\\)?(COM\d+)", re.IGNORECASE)  # COM3, \\.\COM10


LOCK_FOLDER_VARIABLE = "MICROCT_LOCK_FOLDER"
"""An environment variable naming another folder for the instrument locks (a test suite's own, so that two
suites running at once, whose simulators take the same PV prefixes, do not lock each other out)."""


def default_lock_folder() -> Path:
    """The folder of the instrument locks, one for every user: ``$MICROCT_LOCK_FOLDER`` if set, else
    ``/tmp/microct-locks`` on POSIX (not $TMPDIR, which may be per user, as on macOS),
    ``%ProgramData%\\microct-locks`` on Windows."""
    if os.environ.get(LOCK_FOLDER_VARIABLE):
        return Path(os.environ[LOCK_FOLDER_VARIABLE])
    if sys.platform == "win32":
        base = os.environ.get("PROGRAMDATA") or tempfile.gettempdir()
    else:
        base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    return Path(base) / LOCK_FOLDER_NAME


def _serial_key(port: str) -> str:
    com = _COM_PORT.fullmatch(port)
    return f"serial:{com[1].upper()}" if com else f"serial:{os.path.realpath(port)}"


def _tcp_key(host: str, port: int) -> str:
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"  # IPv6 in brackets


def _visa_key(resource: str) -> str | None:
    """A VISA resource's key (case normalised, defaults filled in), or None if it does not parse."""
    from pyvisa import rname  # a core dependency; imported only for VISA connections (90 ms)

    parts = resource.split("::")
    head = re.match(r"([A-Za-z-]*)(.*)", parts[0])
    assert head is not None  # the pattern matches any string
    parts[0] = head[1].upper() + head[2]
    if parts[-1].upper() in _RESOURCE_CLASSES:
        parts[-1] = parts[-1].upper()
    try:
        parsed = rname.parse_resource_name("::".join(parts))
    except rname.InvalidResourceName:
        return None
    if isinstance(parsed, rname.TCPIPSocket):  # the same endpoint as socket://host:port
        return _tcp_key(parsed.host_address.lower(), int(parsed.port))
    if isinstance(parsed, rname.TCPIPInstr):
        return f"visa:TCPIP::{parsed.host_address.lower()}::{parsed.lan_device_name.lower()}::INSTR"
    if isinstance(parsed, rname.ASRLInstr) and not parsed.board.isdigit():  # ASRL/dev/ttyUSB0, ASRLCOM3
        return _serial_key(parsed.board)
    return f"visa:{parsed}"


def connection_key(connection: str | None) -> str | None:
    """What a connection names, one spelling per resource; None for none (in-process, ``loop://``).

    ``serial:/dev/ttyUSB0`` (a port path, symbolic links resolved; ``COM3``; also ``ASRL/dev/...::INSTR``
    and pyserial's ``spy://``/``alt://`` wrappers), ``tcp:host:port`` (``socket://``, ``rfc2217://``, a
    VISA ``TCPIP::host::port::SOCKET``; host in lower case, not resolved), ``visa:RESOURCE`` (other VISA
    resources, canonical), ``url:...`` (other URLs, as given), ``name:...`` (an EPICS PV prefix or record,
    a plug-in's connection string: as given).
    """
    text = (connection or "").strip()
    if not text:
        return None
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme == "loop":
            return None
        if scheme in ("spy", "alt"):  # pyserial wrappers around a port
            return connection_key(rest.split("?", 1)[0])
        if scheme in ("socket", "rfc2217"):
            try:
                url = urlsplit(text)
                host, port = url.hostname, url.port
            except ValueError:
                host, port = None, None
            if host and port is not None:
                return _tcp_key(host, port)
        return f"url:{text}"
    if "::" in text and (key := _visa_key(text)) is not None:
        return key
    if "/" in text or "\\" in text or _COM_PORT.fullmatch(text):
        return _serial_key(text)
    return f"name:{text}"


def _file_name(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-.")[:60]
    return f"{readable}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]}.lock"


class InstrumentLocks:
    """The locks of a configuration's instrument connections, taken all or none, in key order.

    ``locks`` maps each connection key to its OwnerLock. ``acquire()`` (or ``with``) takes every lock or,
    refused (LockedError naming the connection, its roles and drivers, and the holder) or failing,
    releases those it took and raises. ``release()`` releases all; nothing if none is held.
    """

    def __init__(self, locks: dict[str, OwnerLock]) -> None:
        self.locks = dict(sorted(locks.items()))

    def __repr__(self) -> str:
        return f"InstrumentLocks({list(self.locks)}, held={self.held})"

    @property
    def held(self) -> bool:
        """True if any of the locks is held (False for a configuration without shared connections)."""
        return any(lock.held for lock in self.locks.values())

    def acquire(self) -> InstrumentLocks:
        taken: list[OwnerLock] = []
        try:
            for lock in self.locks.values():
                taken.append(lock.acquire())
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise
        return self

    def release(self) -> None:
        for lock in reversed(self.locks.values()):
            lock.release()

    def __enter__(self) -> InstrumentLocks:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def instrument_locks(config: ScanConfig, folder: str | Path | None = None) -> InstrumentLocks:
    """The locks (not yet taken) of ``config``'s instrument connections, in ``folder`` (default:
    :func:`default_lock_folder`). Roles sharing a connection (axes of one controller) share its lock;
    instruments without one (in-process simulators) take none. No I/O but resolving port symlinks."""
    users: dict[str, list[str]] = {}
    for role in type(config).model_fields:
        table = getattr(config, role)
        if isinstance(table, InstrumentConfig) and (key := connection_key(table.connection)) is not None:
            users.setdefault(key, []).append(f"{role}: {table.driver} at {table.connection!r}")
    where = Path(folder) if folder is not None else default_lock_folder()
    return InstrumentLocks({key: OwnerLock(where / _file_name(key), f"instrument connection {key} "
                                           f"({'; '.join(roles)})", INSTRUMENT_ADVICE, shared=True)
                            for key, roles in users.items()})
