"""Shared by the hardening tests: byte strategies (arbitrary and near-valid replies), a port that
answers whatever the driver writes, the properties every parser must keep, and a TOML writer for
generated configurations."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st

from microct.errors import MicroCTError, ProtocolError
from microct.testing.exchange import ScriptedPort
from microct.transport import SerialSettings, SerialTransport

T = TypeVar("T")

LONG_DIGITS = b"7" * 5000
"""More digits than ``int()`` converts (4300 by default): it raises ValueError, not ProtocolError."""

NUMBERS: tuple[bytes, ...] = (
    b"-1", b"+1", b"1.5", b"1e3", b"nan", b"inf", b"-inf", b"1e999", b"0x1F", b"1_000", b"\xd9\xa3", b"\xc2\xb2",
    b"4294967296", b"18446744073709551616", b"9" * 400, LONG_DIGITS, b"0" * 4400 + b"1")
"""What a number can turn into: signs, points, exponents, NaN and infinities, other bases, Unicode digits
(U+0663, superscript two), integers beyond 32 and 64 bits, beyond float range (400 digits) and beyond
what int() converts."""
SPECIAL_TOKENS: tuple[bytes, ...] = NUMBERS + (
    b"", b"0", b"\xff\xfe", b"\x00", b" ", b",", b"=", b":", b"$", b"E", b"ERR", b"\r", b"\n")
"""What any token can turn into: the numbers, invalid UTF-8, separators and terminators."""

_BIG = (b"9" * 400, b"1" + b"0" * 309, LONG_DIGITS, b"0" * 4400 + b"1")
"""Integers a float cannot hold (OverflowError), and integers int() refuses (ValueError)."""
_NUMBER_REPLACEMENTS = NUMBERS + _BIG * 4  # the big ones more often: they found most of the bugs
_NUMBER = re.compile(rb"[-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_TOKEN = re.compile(rb"[0-9A-Za-z.+-]+")


@st.composite
def number_replaced(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with one of its numbers replaced by one of NUMBERS (``valid`` itself if it has none)."""
    found = list(_NUMBER.finditer(valid))
    if not found:
        return valid
    number = draw(st.sampled_from(found))
    return valid[:number.start()] + draw(st.sampled_from(_NUMBER_REPLACEMENTS)) + valid[number.end():]


@st.composite
def near(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` after one to three edits: a number or a token replaced (NUMBERS, SPECIAL_TOKENS), bytes
    flipped, inserted, deleted or repeated, the end cut off, or junk appended."""
    data = bytes(valid)
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(("number", "number", "token", "byte", "insert", "delete", "repeat",
                                     "truncate", "append")))
        at = draw(st.integers(0, len(data)))
        if edit == "number":
            data = draw(number_replaced(data))
        elif edit == "token" and (tokens := list(_TOKEN.finditer(data))):
            token = draw(st.sampled_from(tokens))
            data = data[:token.start()] + draw(st.sampled_from(SPECIAL_TOKENS)) + data[token.end():]
        elif edit == "byte" and at < len(data):
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif edit == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8) | st.sampled_from(SPECIAL_TOKENS)) + data[at:]
        elif edit == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)):]
        elif edit == "repeat":
            data = data[:at] + data[at:at + draw(st.integers(1, 16))] * draw(st.integers(2, 4)) + data[at:]
        elif edit == "truncate":
            data = data[:at]
        else:
            data += draw(st.binary(max_size=16) | st.sampled_from(SPECIAL_TOKENS))
    return data


def replies(*valid: bytes) -> st.SearchStrategy[bytes]:
    """Any bytes, the valid replies themselves, and near-valid mutations of them (a number replaced, or
    one to three edits)."""
    assert valid, "give at least one valid reply to mutate"
    examples = st.sampled_from(valid)
    return st.one_of(st.binary(max_size=96), examples, examples.flatmap(number_replaced), examples.flatmap(near))


def returns_or_protocol_error(parse: Callable[..., T], *args: Any) -> T | None:
    """``parse(*args)``: its value, or None if it raised a ProtocolError with a message. Any other
    exception propagates and fails the test."""
    try:
        return parse(*args)
    except ProtocolError as error:
        assert str(error), f"{type(error).__name__} without a message"
        return None


def calls_until_microct_error(*calls: Callable[[], Any]) -> list[Any]:
    """The results of ``calls`` in order, up to the first MicroCTError (which must have a message);
    any other exception fails the test, naming it."""
    results = []
    for call in calls:
        try:
            results.append(call())
        except MicroCTError as error:
            assert str(error), f"{type(error).__name__} without a message"
            break
        except Exception as error:  # the property under test: nothing else gets out
            pytest.fail(f"{getattr(call, '__name__', call)}: {type(error).__name__} escaped instead of a "
                        f"MicroCTError: {error!r}"[:2000])
    return results


# -- a port answering whatever the driver writes -----------------------------------------------------------
class AnsweringPort(ScriptedPort):
    """A fake pyserial port that takes any write and answers it with the next of ``answers`` (raw
    bytes, terminators included or not); once they run out it stays silent. ``on_write`` (if given)
    sees every write first, to play the device's side effects (a detector writing its image file)."""

    def __init__(self, answers: Sequence[bytes], on_write: Callable[[bytes], None] | None = None) -> None:
        super().__init__([])
        self.answers = list(answers)
        self.on_write = on_write

    def write(self, data: bytes) -> int:
        if self.on_write is not None:
            self.on_write(data)
        if self.answers:
            self._pending += self.answers.pop(0)
        return len(data)


_urls = itertools.count()


def answering_transport(answers: Sequence[bytes], settings: SerialSettings,
                        on_write: Callable[[bytes], None] | None = None) -> SerialTransport:
    """An opened SerialTransport on an AnsweringPort (close it when done: ports are shared by URL)."""
    port = AnsweringPort(answers, on_write)
    transport = SerialTransport(f"answering://{next(_urls)}", settings, "fuzzed device",
                                port_factory=lambda *args, **kwargs: port)
    transport.open()
    return transport


@st.composite
def conversation(draw: st.DrawFn, valid: Sequence[bytes], terminator: bytes) -> list[bytes]:
    """The answers of a driver's usual conversation ``valid`` (replies without terminator), each ended by
    ``terminator``, with one or two of them garbled: a near-valid mutation or any bytes, and now and
    then cut short of the terminator (the driver then meets a time-out). Every exchange gets its turn."""
    garbled = draw(st.sets(st.integers(0, len(valid) - 1), min_size=1, max_size=2), label="garbled replies")
    answers = []
    for index, reply in enumerate(valid):
        if index in garbled:
            reply = draw(st.one_of(number_replaced(reply), number_replaced(reply), near(reply), near(reply),
                                   st.binary(max_size=48), st.just(reply)))
            answers.append(reply + (terminator if draw(st.integers(0, 5)) else b""))
        else:
            answers.append(reply + terminator)
    return answers


# -- TOML ----------------------------------------------------------------------------------------------------
def toml_value(value: Any) -> str:
    """``value`` as a TOML value (tables inline). Floats keep NaN and infinities (TOML nan, inf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML also escapes DEL
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(data: dict[str, Any]) -> str:
    """A TOML document of ``data``: one ``key = value`` line per top-level key."""
    return "".join(f"{toml_value(str(key))} = {toml_value(value)}\n" for key, value in data.items())
