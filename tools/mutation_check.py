"""Mutation check of the Zaber driver: do the contract suites catch realistic driver bugs?

A developer script, not a test. For each mutant below it runs the Zaber contract tests over TCP
(``tests/drivers/zaber/test_zaber_wire.py -k OverTcp``: AxisContract and AxisFaultContract for the rotary
and the linear stage) in a child pytest process that loads this module as a plugin (``-p mutation_check``);
the plugin's ``pytest_configure`` reads ``MICROCT_MUTANT`` and monkeypatches ``ZaberAxis`` in that process
only. The mutants live here, never in the driver. A run without a mutant comes first: if it fails, no
mutant can be judged.

Usage (from the repository root, in the project's virtual environment)::

    python tools/mutation_check.py                 # every mutant
    python tools/mutation_check.py stop_not_sent   # some of them
    python tools/mutation_check.py -v ...          # with each failure's message

It prints, per mutant, caught (some test failed) or missed, the failing tests and the time taken, then
a total. A child run stops after ``MAX_FAILURES`` failures (a mutant that hangs moves would otherwise
cost the contract's ``move_timeout_s`` per test); the list is then marked as cut short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/drivers/zaber/test_zaber_wire.py", "-k", "OverTcp"]
MAX_FAILURES = 10
ENVIRONMENT_VARIABLE = "MICROCT_MUTANT"
VERBOSE = False
"""True (option -v): each failing test is shown with its failure message."""


# -- the mutants: each patches ZaberAxis (the class) in the child process -------------------------------------
def swallowed_timeout(axis_class) -> None:
    """(1) read_position() returns the last value read when the controller does not answer."""
    from microct.errors import DeviceTimeoutError

    original = axis_class._do_read_position

    def read_position(self):
        try:
            self._mutant_last = original(self)
        except DeviceTimeoutError:
            return getattr(self, "_mutant_last", 0.0)
        return self._mutant_last

    axis_class._do_read_position = read_position


def stop_not_sent(axis_class) -> None:
    """(2) stop() ends the move's Status but sends no ``stop``: the stage goes on."""

    def stop(self):
        self._engine.stop()

    axis_class._do_stop = stop


def _poll_treating_faults_as(busy: bool) -> Callable:
    def poll(self, move):
        reply = self._command("")
        if reply.warning.startswith("F") or reply.warning == "WL":
            return not busy
        return not reply.busy

    return poll


def fault_as_busy(axis_class) -> None:
    """(3a) the status poll takes a fault flag (WL, FS ...) for "still moving"."""
    axis_class._poll = _poll_treating_faults_as(busy=True)


def fault_as_done(axis_class) -> None:
    """(3b) the status poll takes a fault flag for "move ended" (reported as success)."""
    axis_class._poll = _poll_treating_faults_as(busy=False)


def rejection_ignored(axis_class) -> None:
    """(4) an RJ reply to a movement command (move abs/rel, home) is taken as accepted."""
    from microct.drivers.zaber.codec import Reply
    from microct.errors import MicroCTError

    original = axis_class._command

    def command(self, text, value="", device_scope=False):
        try:
            return original(self, text, value, device_scope)
        except MicroCTError as error:
            if text.split(" ", 1)[0] in ("move", "home") and "rejected" in str(error):
                return Reply(self.options.device, self.options.axis, "OK", "BUSY", "--", "0")
            raise

    axis_class._command = command


def velocity_in_microsteps(axis_class) -> None:
    """(5a) the velocity goes out in microsteps/s, not in speed data units (× 1.6384): 1.64 times slower."""

    def set_velocity(self, velocity):
        self._command(f"set maxspeed {max(1, round(velocity / self.stage.microstep_size))}")

    axis_class._do_set_velocity = set_velocity


def velocity_per_minute(axis_class) -> None:
    """(5b) the velocity goes out in unit/min converted to data units: 60 times too fast."""
    from microct.drivers.zaber.codec import speed_to_data

    def set_velocity(self, velocity):
        self._command(f"set maxspeed {speed_to_data(velocity * 60.0, self.stage)}")

    axis_class._do_set_velocity = set_velocity


def never_completes(axis_class) -> None:
    """(6) the status poll never reports the move ended (faults still raise): every Status hangs."""
    original = axis_class._poll

    def poll(self, move):
        original(self, move)
        return False

    axis_class._poll = poll


def position_wrong_unit(axis_class) -> None:
    """(7) the position read converts microsteps with twice the microstep size (64 instead of 128
    microsteps per full step): every read-back is twice the true position."""
    original = axis_class._do_read_position

    def read_position(self):
        return 2.0 * original(self)

    axis_class._do_read_position = read_position


MUTANTS: dict[str, Callable] = {
    "swallowed_timeout": swallowed_timeout,
    "stop_not_sent": stop_not_sent,
    "fault_as_busy": fault_as_busy,
    "fault_as_done": fault_as_done,
    "rejection_ignored": rejection_ignored,
    "velocity_in_microsteps": velocity_in_microsteps,
    "velocity_per_minute": velocity_per_minute,
    "never_completes": never_completes,
    "position_wrong_unit": position_wrong_unit,
}


# -- the plugin side (in the child pytest process) --------------------------------------------------------------
def pytest_configure(config) -> None:
    name = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not name:
        return
    if name not in MUTANTS:
        raise SystemExit(f"{ENVIRONMENT_VARIABLE}={name!r}: no such mutant (known: {', '.join(MUTANTS)})")
    from microct.drivers.zaber.driver import ZaberAxis

    MUTANTS[name](ZaberAxis)


# -- the runner side ----------------------------------------------------------------------------------------------
def run(mutant: str) -> tuple[int, list[str], bool, float]:
    """Run the tests with ``mutant`` ("" for none): (tests run, failing tests, cut short, seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        environment = {**os.environ, ENVIRONMENT_VARIABLE: mutant,
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tools"),
                                                                   os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutation_check",
                   f"--maxfail={MAX_FAILURES}", f"--junitxml={report}", *TESTS]
        began = time.monotonic()
        subprocess.run(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        took = time.monotonic() - began
        if not report.exists():
            return 0, ["(pytest did not run: no report)"], False, took
        cases = ElementTree.parse(report).getroot().iter("testcase")
        run_, failed = 0, []
        for case in cases:
            run_ += 1
            problem = case.find("failure") if case.find("failure") is not None else case.find("error")
            if problem is not None:
                name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
                why = " ".join((problem.get("message") or "").split())
                failed.append(f"{name}: {why[:300]}" if VERBOSE else name)
    return run_, failed, len(failed) >= MAX_FAILURES, took


def main(names: list[str]) -> int:
    global VERBOSE
    VERBOSE = "-v" in names
    names = [name for name in names if name != "-v"]
    unknown = [name for name in names if name not in MUTANTS]
    if unknown:
        print(f"unknown mutants: {', '.join(unknown)} (known: {', '.join(MUTANTS)})")
        return 2
    print(f"tests: {' '.join(TESTS)}")
    count, failed, _, took = run("")
    if failed or not count:
        print(f"the unmutated driver fails {len(failed)} of {count} tests ({took:.0f} s): fix that first")
        for name in failed:
            print(f"    {name}")
        return 1
    print(f"unmutated: {count} tests pass ({took:.0f} s)\n")
    width = max(map(len, MUTANTS))
    print(f"{'mutant':<{width}}  verdict  failing     time   bug")
    print(f"{'-' * width}  -------  ----------  -----  ---")
    caught = 0
    selected = names or list(MUTANTS)
    for name in selected:
        count, failed, cut, took = run(name)
        caught += bool(failed)
        shown = f"{len(failed)}{'+' if cut else ''} of {count}"
        bug = " ".join((MUTANTS[name].__doc__ or "").split())
        print(f"{name:<{width}}  {'caught' if failed else 'MISSED':<7}  {shown:<10}  {took:3.0f} s  {bug}")
        for test in failed:
            print(f"{'':<{width}}    {test}")
        if cut:
            print(f"{'':<{width}}    (stopped at {MAX_FAILURES} failures)")
        sys.stdout.flush()
    print(f"\ncaught {caught} of {len(selected)} mutants")
    return 0 if caught == len(selected) else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
