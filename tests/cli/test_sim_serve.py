"""`microct sim serve` messages (issue 14): every simulator serves with no option at all and stops on SIGTERM
or Ctrl-C; a port out of range, in use or privileged is one line (exit 2, nothing served, no traceback) for
every simulator, epics included; a fault the served simulator would never fire is refused, each named; a bad
`-O` names the option and its value and lists the allowed options with their types and defaults."""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from microct.cli import main
from microct.errors import ConfigurationError
from microct.faults import FaultPlan
from microct.options import allowed_options, option_line, type_text
from microct.registry import SIMULATORS, entry_points_of, load_simulator
from microct.simulators.faults import fireable_triggers, kinds_of

BUILT_IN = ("hamamatsu", "zaber", "spellman", "pi", "camserver", "dexela", "epics")
REGISTERED = sorted(entry_points_of(SIMULATORS))  # the built-in ones, and any a plug-in package registers
START_S = 60.0  # a generous bound for a start on a loaded machine (the IOC's takes about 2 s)


def serve(*arguments: str, timeout_s: float = START_S) -> subprocess.CompletedProcess:
    """``microct sim serve ARGUMENTS`` that is expected to end by itself (a refusal)."""
    done = subprocess.run([sys.executable, "-m", "microct", "sim", "serve", *arguments], capture_output=True,
                          text=True, timeout=timeout_s, env={**os.environ, "COLUMNS": "250"})
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def read_until(stream, marker: str, timeout_s: float = START_S) -> str:
    """What ``stream`` prints up to ``marker`` (the hint may be wrapped over several lines). It reads the
    pipe itself (``os.read``), never through the stream's buffer: a ``readline`` may buffer lines that
    ``select`` on the pipe then never reports, and the wait would hang with the marker in the buffer."""
    data = b""
    while marker.encode() not in data:
        ready, _, _ = select.select([stream.fileno()], [], [], timeout_s)
        assert ready, f"{marker!r} not printed within {timeout_s:g} s; so far {data.decode(errors='replace')!r}"
        chunk = os.read(stream.fileno(), 65536)
        assert chunk, f"the process ended before printing {marker!r}: {data.decode(errors='replace')!r}"
        data += chunk
    return data.decode()


def plan_of(*faults: dict) -> FaultPlan:
    return FaultPlan.model_validate({"faults": list(faults)})


def fault_file(tmp_path: Path, *faults: dict) -> str:
    path = tmp_path / "faults.toml"
    path.write_text("".join("[[faults]]\n" + "".join(f"{key} = {value!r}\n".replace("'", '"')
                                                      for key, value in fault.items()) for fault in faults))
    return str(path)


# -- every simulator serves with its defaults -------------------------------------------------------------------
@pytest.mark.parametrize("name", REGISTERED)
def test_every_simulator_serves_with_no_option_prints_its_address_and_stops_on_sigterm(name):
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", name], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "250"})
    try:
        address = read_until(process.stdout, "\n").strip()
        hint = read_until(process.stderr, "stops it")
        if name == "epics":  # the IOC: its prefix and a free port of 127.0.0.1
            assert re.fullmatch(r"CT: 127\.0\.0\.1:\d+", address), address
        else:  # a wire simulator: a new pseudo-terminal, the default
            assert address.startswith("/dev/") and Path(address).exists(), address
        assert f"{name} simulator on {address}" in hint
        folders = re.findall(r"(?:images under|frames in)\s+(\S+?)[;,)]", hint)
        for folder in folders:  # camserver's images, the Dexela frames: a temporary folder it names
            assert Path(folder).is_dir()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert f"{name} simulator stopped (SIGTERM)" in rest and "Traceback" not in rest, rest
    for folder in folders:
        assert not Path(folder).exists()  # removed as the simulator ends
    if name in ("camserver", "dexela"):
        assert folders, hint


def test_ctrl_c_stops_a_simulator_too():
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", "zaber", "--tcp", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_until(process.stdout, "\n").startswith("socket://127.0.0.1:")
        read_until(process.stderr, "stops it")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "zaber simulator stopped (SIGINT)" in process.stderr.read()
    finally:
        process.kill()
        process.wait()


# -- ports ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("port, why", [("70000", "port 70000 is out of range"), ("65536", "port 65536 is out of range"),
                                       ("-1", "port -1 is out of range"), ("http", "'http' is not a port number")])
@pytest.mark.parametrize("name", ["hamamatsu", "epics"])
def test_a_port_out_of_range_is_refused_before_anything_starts(name, port, why):
    done = serve(name, "--tcp", port)
    assert done.returncode == 2 and done.stdout == ""
    assert f"argument --tcp/--port: {why}: give 0 (a free port) to 65535" in done.stderr


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_port_in_use_is_refused_naming_it_for_every_simulator(name):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(name, "--tcp", str(port))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no address: it serves nowhere, epics on no other port either
    assert (f"microct: configuration error: sim serve {name}: --tcp {port}: port {port} of 127.0.0.1 is in use "
            f"(another program is serving on it); choose another, or 0 for a free one") in done.stderr


@pytest.mark.parametrize("name", ["hamamatsu", "epics"])
def test_a_privileged_port_is_refused_naming_why(name, mocker, capsys):
    """An unprivileged user's bind of a port below 1024 fails with EACCES (the tests may run as root, where
    it would not: the bind is made to fail as it does for a user)."""
    real_bind = socket.socket.bind

    def bind(sock, address):
        if isinstance(address, tuple) and 0 < address[1] < 1024:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_bind(sock, address)

    mocker.patch.object(socket.socket, "bind", bind)
    assert main(["sim", "serve", name, "--tcp", "80"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (f"sim serve {name}: --tcp 80: port 80 of 127.0.0.1 needs administrator rights (ports below 1024 are "
            f"privileged); use 1024 to 65535; choose another, or 0 for a free one") in err


def test_a_port_of_the_dexela_frame_stream_in_use_is_named_with_its_option():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("dexela", "--tcp", "0", "-O", f"frame_port={port}")
    assert done.returncode == 2 and done.stdout == ""
    assert f"sim serve dexela: frame_port={port}: port {port} of 127.0.0.1 is in use" in done.stderr


def test_a_port_out_of_range_given_to_serve_itself_is_a_configuration_error():
    for name in ("zaber", "epics"):
        with pytest.raises(ConfigurationError, match=r"--tcp 70000: not a port number; give 0 \(a free port\) "
                                                      r"to 65535"):
            load_simulator(name).serve({}, None, 70000)


# -- faults that would never fire -------------------------------------------------------------------------------
def test_faults_a_tube_served_alone_never_fires_are_refused_each_named(tmp_path):
    faults = fault_file(tmp_path,
                        {"kind": "arc", "device": "source", "at_s": 5.0},  # fires: the tube's own timer
                        {"kind": "arc", "device": "source", "at_projection": 3},
                        {"kind": "interlock_open", "device": "source", "probability": 0.5},
                        {"kind": "reply_timeout", "device": "source", "at_frame": 2},
                        {"kind": "frame_dropped", "device": "detector", "at_s": 1.0},
                        {"kind": "disk_full", "device": "writer", "at_frame": 1},
                        {"kind": "garbled_reply", "device": "source", "probability": 0.1})  # fires
    done = serve("hamamatsu", "--tcp", "0", "--faults", faults)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == f"microct: configuration error: sim serve hamamatsu: --faults {faults}: these faults " \
                       f"would never fire here:"
    assert lines[1:6] == [
        "  faults.1 (arc on 'source', at_projection=3): no detector here makes frames: frame and projection "
        "numbers never advance",
        "  faults.2 (interlock_open on 'source', probability=0.5): no detector here offers the tube its exposures: "
        "arcs and interlock openings come at at_s only",
        "  faults.3 (reply_timeout on 'source', at_frame=2): no detector here makes frames: frame and projection "
        "numbers never advance",
        "  faults.4 (frame_dropped on 'detector', at_s=1.0): this simulator does not simulate 'detector'",
        "  faults.5 (disk_full on 'writer', at_frame=1): this simulator does not simulate 'writer'"]
    assert lines[6:] == ["this simulator fires:", "  'source': arc, interlock_open with at_s; reply_timeout, "
                                                  "garbled_reply, disconnect with at_s or probability"]


def test_a_fault_the_epics_beamline_does_not_play_is_refused_before_the_ioc_starts(tmp_path):
    faults = fault_file(tmp_path, {"kind": "garbled_reply", "device": "source", "at_s": 1.0},
                        {"kind": "disconnect", "device": "rotation", "at_projection": 1})
    done = serve("epics", "--faults", faults)
    assert done.returncode == 2 and done.stdout == ""
    assert "faults.0 (garbled_reply on 'source', at_s=1.0): this simulator does not play garbled_reply on 'source'" \
        in done.stderr
    assert "faults.1 (disconnect on 'rotation', at_projection=1): this simulator does not play disconnect on " \
           "'rotation'" in done.stderr
    fires = re.search(r"\n  'source': (.*) with at_s, at_frame, at_projection or probability\n", done.stderr)
    assert fires and {"arc", "interlock_open", "reply_timeout"} <= set(fires[1].split(", ")), done.stderr


@pytest.mark.parametrize("name, fault", [
    ("hamamatsu", {"kind": "arc", "device": "source", "at_s": 30.0}),
    ("hamamatsu", {"kind": "disconnect", "device": "source", "probability": 0.01}),
    ("zaber", {"kind": "stage_stall", "device": "sample_out", "probability": 0.5}),
    ("camserver", {"kind": "frame_dropped", "device": "detector", "at_projection": 2}),
    ("dexela", {"kind": "reply_timeout", "device": "detector", "at_frame": 4}),
    ("epics", {"kind": "arc", "device": "source", "at_projection": 2}),
    ("epics", {"kind": "limit_switch", "device": "rotation", "at_frame": 1}),
])
def test_a_fault_the_simulator_fires_is_accepted(name, fault):
    served = load_simulator(name).serve({}, plan_of(fault), 0)
    served.stop()


@pytest.mark.parametrize("name", ["zaber", "pi", "spellman"])
def test_frame_and_projection_triggers_are_refused_without_a_detector(name):
    device = "source" if name == "spellman" else "rotation"
    with pytest.raises(ConfigurationError, match=rf"faults\.0 \(disconnect on '{device}', at_projection=0\): no "
                                                 r"detector here makes frames"):
        load_simulator(name).serve({}, plan_of({"kind": "disconnect", "device": device, "at_projection": 0}), 0)


def test_a_projection_fault_accepted_for_a_detector_served_alone_does_fire():
    """camserver alone images with its own tube, beam on, at angle 0: every frame is a projection."""
    from microct.errors import FrameLostError
    from microct.simulators.camserver import CamserverResponder
    from microct.simulators.faults import FaultSchedule

    schedule = FaultSchedule([{"kind": "frame_dropped", "device": "detector", "at_projection": 1}])
    panel = CamserverResponder(model="100K", faults=schedule).panel
    panel.set_exposure_s(0.001)
    panel.acquire(1)
    with pytest.raises(FrameLostError):
        panel.acquire(1)
    assert [(hit.index, hit.what) for hit in schedule.hits] == [(0, "frame 1")]


def test_the_epics_plays_table_is_what_the_beamline_attaches():
    from microct.simulators.epics_beamline import PLAYS, start_beamline
    from microct.simulators.faults import FaultSchedule

    schedule = FaultSchedule()
    beamline = start_beamline("PLAYS:", faults=schedule)
    try:
        assert schedule.attached() == sorted(PLAYS)
    finally:
        beamline.stop()
    assert all(PLAYS[device] <= kinds_of(device) for device in PLAYS)


def test_which_triggers_fire():
    tube = {"source": kinds_of("source")}
    assert fireable_triggers("arc", "source", tube, frames=False) == ("at_s",)
    assert fireable_triggers("reply_timeout", "source", tube, frames=False) == ("at_s", "probability")
    assert fireable_triggers("arc", "source", tube, frames=True) == ("at_s", "at_frame", "at_projection",
                                                                     "probability")
    assert fireable_triggers("frame_dropped", "detector", tube, frames=False) == ()


# -- bad -O ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILT_IN)
def test_an_unknown_option_is_named_with_its_value_and_the_allowed_options_listed(name, capsys):
    assert main(["sim", "serve", name, "--tcp", "0", "-O", "colour=blue"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first, heading, *listed = err.splitlines()
    assert first == f'microct: configuration error: sim serve {name}: -O colour="blue": unknown option'
    assert heading == "allowed options (-O KEY=VALUE):"
    simulator = load_simulator(name)
    assert listed == [f"  {option_line(key, info)}" for key, info in simulator.options.model_fields.items()]
    assert all(re.fullmatch(r"  \w+: [\w\[\], |.]+( = .+| \(required\))", line) for line in listed), listed
    assert not any("(required)" in line for line in listed)  # every simulator serves with its defaults


@pytest.mark.parametrize("arguments, problem", [
    (["hamamatsu", "-O", "model=L99"], '-O model="L99": Input should be \'L9181-02\', \'L10711\' or \'L12721\''),
    (["hamamatsu", "-O", "auto_stop_s=soon"], '-O auto_stop_s="soon": Input should be a valid number'),
    (["hamamatsu", "-O", "auto_stop_s=99"], "auto_stop_s=99.0: 0 (off) or up to 60 s"),  # the simulator's own check
    (["camserver", "-O", "bad_pixels=-3"], "bad_pixels"),
    (["camserver", "-O", "geometry={source_object_distance_mm = -1}"], "-O geometry.source_object_distance_mm=-1"),
    (["epics", "-O", "warmup_s=-1"], "-O warmup_s=-1: Input should be greater than or equal to 0"),
    (["zaber", "-O", "stages=[\"X-NOPE\"]"], "stage='X-NOPE' is not in the model table"),
])
def test_a_bad_option_value_is_named_and_the_allowed_options_listed(arguments, problem, capsys):
    assert main(["sim", "serve", *arguments[:1], "--tcp", "0", *arguments[1:]]) == 2
    err = capsys.readouterr().err
    assert problem in err.splitlines()[0], err
    assert "\nallowed options (-O KEY=VALUE):\n" in err


def test_the_option_listing_shows_types_defaults_and_choices():
    listing = allowed_options(load_simulator("hamamatsu").options).splitlines()
    assert '  model: str = "L10711" (one of "L9181-02", "L10711", "L12721")' in listing
    assert "  auto_stop_s: float = 3.0" in listing and "  seed: int = unset" in listing
    assert "voltage_range_kv" not in "\n".join(listing)  # from the model table, not an option
    assert '  stages: list[str] = ["X-RSW60A", "X-LSM100A"]' in allowed_options(load_simulator("zaber").options)
    assert type_text(dict[str, list[int]] | None) == "dict[str, list[int]]"


def test_a_bad_option_from_the_command_line_shows_no_traceback():
    done = serve("spellman", "--tcp", "0", "-O", "serial=maybe", "-O", "family=XRZ")
    assert done.returncode == 2 and done.stdout == ""
    assert '-O serial="maybe": Input should be a valid boolean' in done.stderr
    assert "-O family=\"XRZ\": Input should be 'XRV' or 'uX'" in done.stderr
    assert '  family: str = unset (one of "XRV", "uX")' in done.stderr
