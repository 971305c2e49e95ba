"""The motor record's vocabulary (``epics_motor.codec``) and the simulated IOC built from it: the IOC serves
every field the driver connects, the MSTA bits sit where the record puts them, and the soft-limit rule of
``motorRecord.cc`` on both sides: off only when both dial limits are 0, an inverted pair refuses every move
(no Channel Access traffic)."""

from __future__ import annotations

from microct.devices.axis import AxisCapabilities
from microct.drivers.epics_motor.codec import (
    FIELDS,
    MONITORED,
    Msta,
    limits_enabled,
    limits_usable,
    refuses,
    soft_limits,
)
from microct.simulators.epics_motor_ioc import build


def test_the_ioc_serves_every_field_the_driver_connects():
    ioc = build("CODEC:ROT:m1")
    try:
        assert {"CODEC:ROT:m1" + suffix for suffix in FIELDS.values()} <= set(ioc.pvdb)
        assert set(MONITORED) <= set(FIELDS)
        assert ioc.pvdb["CODEC:ROT:m1" + FIELDS["msta"]].value == Msta.DONE | Msta.PRESENT
    finally:
        ioc.axis.close()


def test_msta_bits_follow_the_record():
    assert [flag.value.bit_length() - 1 for flag in Msta] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]


def test_soft_limits_are_off_only_when_both_dial_limits_are_0():
    # (llm, hlm, dllm, dhlm): user = dial here (DIR Pos, OFF 0) but for the last pair (OFF = 3)
    assert soft_limits(-10.0, 10.0, -10.0, 10.0) == (-10.0, 10.0)
    assert soft_limits(0.0, 0.0, 0.0, 0.0) == (None, None) and not limits_enabled(0.0, 0.0)
    assert soft_limits(3.0, 3.0, 0.0, 0.0) == (None, None)  # dial 0/0 with an offset: user limits 3/3, still off
    for dllm, dhlm in ((5.0, -5.0), (0.0, -5.0), (5.0, 0.0), (2.0, 2.0)):  # not both 0: enforced
        assert limits_enabled(dllm, dhlm) and not limits_usable(dllm, dhlm), (dllm, dhlm)
    assert limits_usable(0.0, 0.0) and limits_usable(-1.0, 1.0)
    caps = AxisCapabilities("deg", 10.0, -50.0, 50.0)
    assert caps.narrowed(*soft_limits(0.0, 0.0, 0.0, 0.0)) == caps
    assert caps.narrowed(*soft_limits(-100.0, 20.0, -100.0, 20.0)) == AxisCapabilities("deg", 10.0, -50.0, 20.0)


def test_the_record_refuses_set_points_by_its_dial_limits():
    assert not refuses(1e6, 0.0, 0.0)  # no soft limits
    assert not refuses(10.0, -10.0, 10.0) and refuses(10.5, -10.0, 10.0) and refuses(-11.0, -10.0, 10.0)
    assert refuses(0.0, 5.0, -5.0) and refuses(0.0, 0.0, -5.0)  # inverted: every set-point
    assert not refuses(2.0, 2.0, 2.0) and refuses(2.5, 2.0, 2.0)  # equal, not 0: that one position only


def test_the_simulated_record_serves_its_dial_limits_as_its_user_limits():
    ioc = build("CODEC:ROT:m2", high_limit=0.0, low_limit=0.0)
    try:
        assert {field: ioc.pvdb["CODEC:ROT:m2" + FIELDS[field]].value for field in ("hlm", "llm", "dhlm", "dllm")} \
            == dict.fromkeys(("hlm", "llm", "dhlm", "dllm"), 0.0)
    finally:
        ioc.axis.close()
