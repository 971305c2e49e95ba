"""The Hamamatsu microfocus protocol, both ends of the RS-232 line; pure, no I/O.

Driver side: command bytes (``encode_*`` and the command words) and replies parsed into values
(``parse_*``); simulator side: request lines parsed and checked as the device does (``parse_request``)
and replies formatted (``format_*``). Commands are bytes without the CR terminator (the transport adds
and strips it). Errors: ``ErrorReply`` for the device's refusal, ``ERR <code> <command word>`` (code and
its meaning from ``ERROR_CODES``) or the older bare ``ERR`` / ``ERROR`` (code None); ProtocolError naming
command and reply for anything else the protocol does not allow; LimitError for an argument the protocol
cannot carry.

Sources cited below: "notes" are the repository's protocol notes, docs/protocols/hamamatsu-microfocus.md
(sections "Framing", "Commands", "Error codes"); "manual" is Hamamatsu's instruction manual of the same
command family, the L9421-02T manual (Japanese, Ver. 1.0; sections A4 "command and reply format", A5
"command list", A11 "RS-232C command/reply table", 10 "notes on writing control software"); "host code" is public
vendor-integrator host software for these controllers (the CT30K micro-CT control, XrayCtrl classes
clsCtrlXrayL10711 and clsCtrlXrayL9181_02), read to check reply layouts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from microct.driverkit import ErrorReply, LimitError, ProtocolError, SourceState

# Actions and queries without an argument (notes, "Commands").
XON, XOF, WUP, RST = b"XON", b"XOF", b"WUP", b"RST"
STS, SAR, SNR, SVI, SHV, SCU, SIN, SPH, SWE, SFC, TYP, SER = (
    b"STS", b"SAR", b"SNR", b"SVI", b"SHV", b"SCU", b"SIN", b"SPH", b"SWE", b"SFC", b"TYP", b"SER")
SAT = b"SAT"  # the auto-stop time (manual A5, A11: "SAT 0～60")
# Setters with one argument (notes, "Commands"; AST: manual A5 note 3, A11).
HIV, CUR, CFS, AST = b"HIV", b"CUR", b"CFS", b"AST"

ACTIONS = frozenset({XON, XOF, WUP, RST})
QUERIES = frozenset({STS, SAR, SNR, SVI, SHV, SCU, SIN, SPH, SWE, SFC, TYP, SER, SAT})
SETTER_ARGUMENTS: dict[bytes, re.Pattern[bytes]] = {
    HIV: re.compile(rb"\d{3,4}"),  # whole kV zero padded to 3 digits (notes: "HIV 080"; host code formats "000")
    CUR: re.compile(rb"\d{3,4}"),  # whole µA likewise; 1000 µA takes 4 digits (notes: up to 1000 µA)
    CFS: re.compile(rb"\d"),       # one digit: the focus-mode code (notes: "CFS n")
    AST: re.compile(rb"\d{1,2}"),  # whole seconds 0-60 (manual A11 "AST 0～60"; A5 prints "AST 0１-60")
}
"""Each setter's argument as the device takes it (a request in another form is answered ``ERR 20 <word>``)."""

AUTO_STOP_S = range(61)
"""The auto-stop times ``AST n`` sets and ``SAT n`` reports, whole seconds: 1-60, 0 disables the automatic
X-ray stop (manual A5 note 3, which says never to use 0 in normal operation; A11)."""
DEFAULT_AUTO_STOP_S = 3
"""The controller switches X-rays off when no command has arrived for this long, unless ``AST`` changed
it (manual §10 1., A5 note 3: the initial setting)."""

ERR = b"ERR"
ERROR_WORDS = (ERR, b"ERROR")  # the refusal's first word: ERR; older dialects ERROR (notes, "Error codes")
ERR_MEANING = "unknown command, bad argument, or not allowed in the current state"
"""What a bare ``ERR`` / ``ERROR`` (the older dialects, no code) means (notes, "Error codes")."""

# The refusal ``ERR <code> <word>``: <word> is the refused command's word ("ERR 20 HIV" answers "HIV 180",
# manual A4 2) ii) example 4; A11: "*** is the command sent"), except code 0, always "ERR 0 NOC".
NOC = b"NOC"
NOT_A_COMMAND, STATE_ERROR, PARAMETER_ERROR, ABOVE_USER_MAXIMUM, POWER_ERROR = 0, 10, 20, 30, 40
ERROR_CODES: dict[int, str] = {
    # manual A4 2) ii), A11; also the reply to the first command after power-on (manual §10 2.)
    NOT_A_COMMAND: "command not recognised (also the answer to the first command after power-on)",
    STATE_ERROR: "state error: not accepted in the present state",  # manual A4 2) ii), A11
    PARAMETER_ERROR: "parameter error: beyond the settable range",  # manual A4 2) ii), A11
    ABOVE_USER_MAXIMUM: "above the user maximum set with CMV / CMC",  # manual A11
    POWER_ERROR: "wattage error: above the power limit",  # manual A4 2) ii), A11
}
"""The error codes of ``ERR <code> <word>`` and what the manual says they mean."""

# STS codes (notes, "Commands"). 6 (self-test, at power-on) cannot take XON either: not ready.
STATE_CODES: dict[int, SourceState] = {
    0: SourceState.WARMUP_NEEDED, 1: SourceState.WARMING_UP, 2: SourceState.STANDBY,
    3: SourceState.BEAM_ON, 4: SourceState.FAULT, 5: SourceState.NOT_READY, 6: SourceState.NOT_READY}
_CODE_OF_STATE = {state: code for code, state in STATE_CODES.items() if code != 6}

# SER / first SNR field (notes, "Error codes").
BOARD_ERRORS = {3: "control-board fault", 4: "control-board fault", 200: "fan fault",
                201: "input supply voltage", 202: "input supply voltage", 208: "input supply voltage",
                203: "board fault", 204: "board fault", 206: "board fault", 207: "board fault",
                209: "temperature"}

# Fourth SNR field on open (pumped) tubes: vacuum level 0 (low) .. 5 (high), 6-7 gauge faults (host
# code, L10711 SVC); level 2 and above lets X-rays on (host code, L9191 vacuum notes).
VACUUM_READY = range(2, 6)


@dataclass(frozen=True)
class BulkStatus:
    """``SAR``: state and measured read-backs in one reply (kV, µA)."""

    state: SourceState
    voltage_kv: float
    current_ua: float


@dataclass(frozen=True)
class NotReadyCauses:
    """``SNR``: board error code (0 none), interlock open, filament preheating, vacuum level."""

    board_error: int
    interlock_open: bool
    preheating: bool
    vacuum_level: int


@dataclass(frozen=True)
class Request:
    """One request line as the device reads it: the command word and, for a setter (``HIV``, ``CUR``,
    ``CFS``), its whole-number argument (kV, µA, focus-mode code); None for a query or an action."""

    word: bytes
    argument: int | None = None


# -- encoding (driver side) ------------------------------------------------------------------------------
def _encode_whole(word: bytes, value: int, unit: str) -> bytes:
    if value < 0:
        raise LimitError(f"{word.decode()}: {value} {unit} is negative; the device takes whole {unit} >= 0")
    return b"%s %03d" % (word, value)  # notes: "HIV 080"; host code formats "000"


def encode_voltage(voltage_kv: int) -> bytes:
    """``HIV nnn``: tube voltage set-point in whole kV; LimitError if negative."""
    return _encode_whole(HIV, voltage_kv, "kV")


def encode_current(current_ua: int) -> bytes:
    """``CUR nnn``: tube current set-point in whole µA; LimitError if negative."""
    return _encode_whole(CUR, current_ua, "µA")


def encode_focus(code: int) -> bytes:
    """``CFS n``: focus mode by its model-table code (0-9)."""
    return b"CFS %d" % code


def encode_auto_stop(seconds: int) -> bytes:
    """``AST n``: the auto-stop time in whole seconds, 1-60 (0 disables the automatic X-ray stop: never in
    normal use, manual A5 note 3); LimitError outside 0-60. The device refuses it (``ERR 10 AST``) while
    warming up, with X-rays on, or with a board error (manual A11)."""
    if seconds not in AUTO_STOP_S:
        raise LimitError(f"AST: {seconds} s is outside {AUTO_STOP_S.start}-{AUTO_STOP_S.stop - 1} s")
    return b"AST %d" % seconds


# -- requests (simulator side) ---------------------------------------------------------------------------
def _refusal(line: bytes, code: int, why: str = "") -> ErrorReply:
    """The device's refusal of the request ``line`` with error ``code`` (``ERROR_CODES``): ``ErrorReply``
    whose message shows the reply the device gives (``format_error``) and ``why``."""
    text = line.decode(errors="replace")
    reply = format_error(code, line).decode(errors="replace")
    meaning = ERROR_CODES[code]
    return ErrorReply(code, meaning, text, message=f"{text!r}: the device answers {reply!r} ({why or meaning})")


def parse_request(line: bytes) -> Request:
    """The request ``line`` (without CR) as the device reads it. ErrorReply with the code the device
    answers, naming why: ``NOT_A_COMMAND`` (``ERR 0 NOC``) for an unknown command word or an argument to
    a query or action; ``PARAMETER_ERROR`` (``ERR 20 <word>``) for a setter without exactly one argument
    or with one not in the device's form (``SETTER_ARGUMENTS``). The manual (A4 2) ii)) names the codes,
    not which one each malformed request gets: these two are this project's reading of them."""
    words = line.split()
    if not words:
        raise _refusal(line, NOT_A_COMMAND, "empty request")
    word, *arguments = words
    if word in QUERIES or word in ACTIONS:
        if arguments:
            raise _refusal(line, NOT_A_COMMAND, f"{word.decode()} takes no argument")
        return Request(word)
    form = SETTER_ARGUMENTS.get(word)
    if form is None:
        raise _refusal(line, NOT_A_COMMAND, "unknown command")
    if len(arguments) != 1:
        raise _refusal(line, PARAMETER_ERROR, f"{word.decode()} takes one argument")
    if not form.fullmatch(arguments[0]):
        raise _refusal(line, PARAMETER_ERROR, f"{arguments[0].decode(errors='replace')!r} is not a "
                                              f"{word.decode()} argument (a whole number of the form "
                                              f"{form.pattern.decode()})")
    return Request(word, int(arguments[0]))


def is_query(line: bytes) -> bool:
    """True if the request ``line`` (no CR) only reads: a query word of ``QUERIES`` without an argument
    (notes, "Commands"); False for a setter, an action (XON, XOF, WUP, RST) and a request the device
    refuses."""
    try:
        return parse_request(line).word in QUERIES
    except ErrorReply:
        return False


# -- replies (driver side) -------------------------------------------------------------------------------
def _garbled(command: bytes, reply: bytes, why: str) -> ProtocolError:
    return ProtocolError(f"{command.decode()!r}: garbled reply {reply!r} ({why})")


def parse_error(command: bytes, reply: bytes) -> ErrorReply | None:
    """The refusal ``reply`` to ``command`` as ``ErrorReply`` (to raise); None if the reply is not a
    refusal (its first word is not ``ERR`` / ``ERROR``).

    ``ERR <code> <word>`` (manual A4 2) ii)): ``code`` and its meaning (``ERROR_CODES``; a code not in the
    table is reported by number); the word must be the command's own (or ``NOC`` with code 0), otherwise the
    reply answers another command: ProtocolError (garbled). A bare ``ERR`` / ``ERROR`` (older dialects),
    or ``ERR`` followed by anything else: code None (notes: a client must accept ``ERR`` followed by
    anything)."""
    words = reply.split()
    if not words or words[0] not in ERROR_WORDS:
        return None
    sent, shown = command.decode(), reply.decode(errors="replace")
    code_and_word = words[1:]
    if not 1 <= len(code_and_word) <= 2 or not (code_and_word[0].isdigit() and len(code_and_word[0]) <= 3):
        return ErrorReply(None, ERR_MEANING, sent, message=f"{sent!r} was answered {shown!r}: {ERR_MEANING}")
    code = int(code_and_word[0])
    word = command.split()[0]
    if code_and_word[1:] and code_and_word[1] not in ((NOC, word) if code == NOT_A_COMMAND else (word,)):
        raise _garbled(command, reply, f"it refuses {code_and_word[1].decode(errors='replace')!r}, not "
                                       f"{word.decode()!r}")
    meaning = ERROR_CODES.get(code, "not in the manual's error table")
    return ErrorReply(code, meaning, sent, message=f"{sent!r} was answered {shown!r}: error {code}, {meaning}")


def _fields(command: bytes, reply: bytes, count: int, at_least: bool = False) -> list[bytes]:
    """The values after the echoed command word; ErrorReply for a refusal (``parse_error``), ProtocolError
    for anything else."""
    if (refused := parse_error(command, reply)) is not None:
        raise refused
    word, *values = reply.split() or [b""]
    if word != command.split()[0]:
        raise _garbled(command, reply, f"expected the reply to start with {command.split()[0].decode()!r}")
    if len(values) < count or (len(values) > count and not at_least):
        raise _garbled(command, reply, f"expected {'at least ' if at_least else ''}{count} value(s)")
    return values


def _number(command: bytes, reply: bytes, token: bytes) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _garbled(command, reply, f"{token.decode(errors='replace')!r} is not a number") from None
    if not math.isfinite(value):
        raise _garbled(command, reply, f"{token.decode()!r} is not a finite number")
    return value


def _code(command: bytes, reply: bytes, token: bytes, allowed: range | Mapping[int, Any]) -> int:
    try:
        code = int(token) if token.isdigit() else None
    except ValueError:  # more digits than int() converts: garbage, not a code
        code = None
    if code is None or code not in allowed:
        raise _garbled(command, reply, f"{token.decode(errors='replace')!r} is not one of the codes "
                                       f"{min(allowed)}-{max(allowed)}")
    return code


def parse_echo(command: bytes, reply: bytes) -> None:
    """A setter or action is answered by its echo; the value in it, if any, must be the one sent
    (notes: the L10711 echo carries the value, "HIV 100"; host code: other models echo the command)."""
    word, *argument = command.split()
    values = _fields(command, reply, 0, at_least=bool(argument))
    if len(values) > len(argument):
        raise _garbled(command, reply, "expected the echo of the command")
    if values and _number(command, reply, values[0]) != int(argument[0]):
        raise _garbled(command, reply, f"the device echoes {values[0].decode()}, {argument[0].decode()} was sent")


def parse_state(reply: bytes) -> SourceState:
    """``STS n`` → the source state."""
    return STATE_CODES[_code(STS, reply, _fields(STS, reply, 1)[0], STATE_CODES)]


def parse_status(reply: bytes) -> BulkStatus:
    """``SAR sts kV µA ...``: state, measured kV and µA (L9181-02 pads with zeros, the L10711 adds
    target current, filament and alignment states: host code; only the first three are read)."""
    sts, kv, ua = _fields(SAR, reply, 3, at_least=True)[:3]
    return BulkStatus(STATE_CODES[_code(SAR, reply, sts, STATE_CODES)], _number(SAR, reply, kv),
                      _number(SAR, reply, ua))


def parse_not_ready(reply: bytes) -> NotReadyCauses:
    """``SNR ser sin sph [svc]``: why the tube is not ready (notes; host code: the L9181-02 sends 0 as svc)."""
    values = _fields(SNR, reply, 3, at_least=True)
    ser = _code(SNR, reply, values[0], range(1000))
    sin, sph = (_code(SNR, reply, v, range(2)) for v in values[1:3])
    svc = _code(SNR, reply, values[3], range(10)) if len(values) > 3 else 0
    return NotReadyCauses(ser, bool(sin), bool(sph), svc)


def parse_setpoints(reply: bytes) -> tuple[float, float]:
    """``SVI kV µA`` → the set-points (kV, µA)."""
    kv, ua = _fields(SVI, reply, 2)
    return _number(SVI, reply, kv), _number(SVI, reply, ua)


def parse_voltage(reply: bytes) -> float:
    """``SHV n`` → measured tube voltage (kV)."""
    return _number(SHV, reply, _fields(SHV, reply, 1)[0])


def parse_current(reply: bytes) -> float:
    """``SCU n`` → measured tube current (µA)."""
    return _number(SCU, reply, _fields(SCU, reply, 1)[0])


def parse_interlock_open(reply: bytes) -> bool:
    """``SIN n``: 0 closed, 1 open."""
    return bool(_code(SIN, reply, _fields(SIN, reply, 1)[0], range(2)))


def parse_preheating(reply: bytes) -> bool:
    """``SPH n``: 1 preheating, 0 done."""
    return bool(_code(SPH, reply, _fields(SPH, reply, 1)[0], range(2)))


def parse_warmup(reply: bytes) -> int:
    """``SWE n``: 0 done, 1 running, 2 not yet, 3 time over (L10711)."""
    return _code(SWE, reply, _fields(SWE, reply, 1)[0], range(4))


def parse_focus(reply: bytes) -> int:
    """``SFC n`` → the focus-mode code."""
    return _code(SFC, reply, _fields(SFC, reply, 1)[0], range(10))


def parse_model_name(reply: bytes) -> str:
    """``TYP name`` → the model name."""
    return b" ".join(_fields(TYP, reply, 1, at_least=True)).decode(errors="replace")


def parse_board_error(reply: bytes) -> int:
    """``SER n`` → board error code, 0 none."""
    return _code(SER, reply, _fields(SER, reply, 1)[0], range(1000))


def parse_auto_stop(reply: bytes) -> int:
    """``SAT n`` → the auto-stop time in whole seconds, 0-60 (0: the automatic X-ray stop is disabled)."""
    return _code(SAT, reply, _fields(SAT, reply, 1)[0], AUTO_STOP_S)


def describe_not_ready(causes: NotReadyCauses, vacuum_gauge: bool) -> str:
    """The causes in words; the vacuum level only counts on tubes whose SNR reports one."""
    reasons = []
    if causes.interlock_open:
        reasons.append("interlock open")
    if causes.preheating:
        reasons.append("filament preheating")
    if causes.board_error:
        reasons.append(f"board error {causes.board_error} "
                       f"({BOARD_ERRORS.get(causes.board_error, 'code not in the error table')})")
    if vacuum_gauge and causes.vacuum_level not in VACUUM_READY:
        reasons.append(f"vacuum level {causes.vacuum_level} (X-rays need "
                       f"{VACUUM_READY.start}-{VACUUM_READY.stop - 1})")
    return "; ".join(reasons) or "SNR reports no cause"


# -- replies (simulator side) ----------------------------------------------------------------------------
def format_values(word: bytes, *values: float) -> bytes:
    """``WORD v1 v2 ...`` with each value as a whole number (``SVI 100 50``, ``SHV 100``, ``SIN 1``)."""
    return b" ".join([word, *(b"%d" % round(value) for value in values)])


def format_state(state: SourceState) -> bytes:
    """``STS n``."""
    return format_values(STS, _CODE_OF_STATE[state])


def format_status(state: SourceState, voltage_kv: float, current_ua: float) -> bytes:
    """``SAR sts kV µA 0 0 0 0`` (seven fields, as the host code reads them)."""
    return format_values(SAR, _CODE_OF_STATE[state], voltage_kv, current_ua, 0, 0, 0, 0)


def format_not_ready(causes: NotReadyCauses) -> bytes:
    """``SNR ser sin sph svc``."""
    return format_values(SNR, causes.board_error, causes.interlock_open, causes.preheating, causes.vacuum_level)


def format_model_name(name: str) -> bytes:
    """``TYP name``."""
    return b"TYP " + name.encode()


def format_error(code: int, line: bytes) -> bytes:
    """The refusal of the request ``line`` with error ``code``: ``ERR <code> <word>``, the word being the
    request's command word, or ``NOC`` for code 0 (manual A4 2) ii), A11)."""
    word = NOC if code == NOT_A_COMMAND else (line.split() or [NOC])[0]
    return b"ERR %d %s" % (code, word)
