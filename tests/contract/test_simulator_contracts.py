"""The device contracts (microct.testing.contracts) run against the in-process simulators.

Every device shares a SimulatedClock, so ramps, warm-ups, moves and exposures
take no wall-clock time.
"""

import pytest

from microct.clock import SimulatedClock
from microct.devices.source import SourceState, SpotMode
from microct.geometry import Geometry
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.testing.contracts import (
    AxisContract,
    AxisFaultContract,
    DetectorContract,
    DetectorFaultContract,
    SourceContract,
    SourceFaultContract,
    UnboundedAxisContract,
)


@pytest.fixture
def clock():
    return SimulatedClock(start_time=1_700_000_000.0)


# -- sources ---------------------------------------------------------------------------------------------
class TestSimulatedSource(SourceContract, SourceFaultContract):
    """The default tube: 20-150 kV, 0-500 µA, three spot modes (10, 30, 75 W); already warmed up."""

    @pytest.fixture
    def hook(self, source):
        return source.fault_hook()

    @pytest.fixture
    def new_device(self, clock):
        return lambda: SimulatedSource("tube", SimulatedSourceOptions(warmed_up=True), clock=clock, seed=1)

    @pytest.fixture
    def source(self, new_device):
        source = new_device()
        source.connect()
        yield source
        source.close()


class TestSimulatedSourceTwoModes(SourceContract):
    """A smaller tube with a non-zero minimum current, warmed up through warm_up() in the fixture."""

    options = SimulatedSourceOptions(
        voltage_range_kv=(40.0, 90.0), current_range_ua=(10.0, 200.0),
        spot_modes={"std": SpotMode(power_limit_w=8, spot_size_um=8),
                    "fine": SpotMode(power_limit_w=4, spot_size_um=4)},
        ramp_kv_per_s=5.0, ramp_ua_per_s=20.0, warmup_s=300.0)

    @pytest.fixture
    def new_device(self, clock):
        return lambda: SimulatedSource("tube-2", self.options, clock=clock, seed=2)

    @pytest.fixture
    def source(self, new_device):
        source = new_device()
        source.connect()
        source.warm_up()
        source.clock.sleep(self.options.warmup_s)
        assert source.read_state() is SourceState.STANDBY
        yield source
        source.close()


# -- axes --------------------------------------------------------------------------------------------------
class TestSimulatedRotaryAxis(AxisContract, AxisFaultContract):
    home_position = 0.0

    @pytest.fixture
    def hook(self, axis):
        return axis.fault_hook()

    @pytest.fixture
    def new_device(self, clock):
        options = SimulatedAxisOptions(unit="deg", max_velocity=90.0, acceleration=360.0,
                                       low_limit=-400.0, high_limit=400.0)
        return lambda: SimulatedAxis("rotation", options, clock=clock, seed=3)


class TestSimulatedUnboundedRotation(UnboundedAxisContract):
    """A continuous rotation stage: no soft limits."""

    home_position = 0.0

    @pytest.fixture
    def new_device(self, clock):
        options = SimulatedAxisOptions(unit="deg", max_velocity=180.0, acceleration=720.0)
        return lambda: SimulatedAxis("rotation", options, clock=clock, seed=7)


class TestSimulatedLinearAxis(AxisContract, AxisFaultContract):
    """A linear stage with read-back noise (1 µm), so the tolerance matters."""

    @pytest.fixture
    def hook(self, axis):
        return axis.fault_hook()

    position_tolerance = 0.01
    home_position = 5.0

    @pytest.fixture
    def new_device(self, clock):
        options = SimulatedAxisOptions(unit="mm", max_velocity=20.0, acceleration=100.0, low_limit=0.0,
                                       high_limit=100.0, initial_position=50.0, home_position=5.0,
                                       position_noise=0.001)
        return lambda: SimulatedAxis("sample_out", options, clock=clock, seed=4)


# -- detector ------------------------------------------------------------------------------------------------
class TestSimulatedDetector(DetectorContract, DetectorFaultContract):
    """A small, non-square 12-bit panel (rows ≠ columns catches swapped axes; 12 bits makes clipping visible)."""

    @pytest.fixture
    def hook(self, detector):
        return detector.fault_hook()

    @pytest.fixture
    def context(self, clock):
        source = SimulatedSource("source", SimulatedSourceOptions(warmed_up=True), clock=clock, seed=5)
        source.connect()
        source.configure(voltage_kv=100.0, current_ua=50.0, spot_mode="small")
        source.beam_on()
        clock.sleep(15.0)  # let kV and µA ramp up
        context = Bench(clock=clock, geometry=Geometry(100.0, 500.0), seed=6, devices={"source": source})
        yield context
        source.close()

    @pytest.fixture
    def new_device(self, context):
        options = SimulatedDetectorOptions(rows=48, columns=64, pixel_pitch_um=1000.0, bit_depth=12)
        return lambda: SimulatedDetector("panel", options, context)
