"""Contract test suites: written once, run against every implementation of a device interface.

Each contract is a plain pytest test class, one module per device kind. A driver's test module
subclasses it and provides the fixtures it names; pytest then runs every contract test against that
driver, in process or over a real link to a wire simulator::

    import pytest
    from microct.testing.contracts import AxisContract, AxisFaultContract

    class TestMyStage(AxisContract, AxisFaultContract):
        @pytest.fixture
        def new_device(self, served):
            # a zero-argument callable: each call builds a new, never-connected instance
            return lambda: MyStage("stage", MyStage.Options(), served.address)

        @pytest.fixture
        def hook(self, served):
            return served.hook  # the simulator's AxisHook (see microct.testing.contracts.hooks)

Contracts and the fixtures they need:

- ``LifecycleContract`` (in every other): ``new_device``, a callable returning a new, never-connected
  instance: construction without I/O, connect/close, context-manager use, registry checks.
- ``SourceContract``: ``source``, connected, warmed up (state STANDBY), interlock closed.
- ``AxisContract``: ``new_device`` building an axis with finite soft limits (``axis`` connects one);
  ``UnboundedAxisContract``: a rotation stage without soft limits.
- ``DetectorContract``: ``new_device`` (``detector`` connects one).
- Fault contracts, driven through a small hook the simulator provides (``hooks``: silence the
  controller, strike a fault, read the true state): ``SourceFaultContract`` (``source``, ``hook``),
  ``AxisFaultContract`` (``axis``, ``hook``), ``DetectorFaultContract`` (``detector``, ``hook``).

Every wait has a bound (class attributes such as ``move_timeout_s``, ``reply_timeout_bound_s``): a
Status that never completes or a call that hangs fails the test instead of hanging the suite.
Tolerances and bounds are class attributes a subclass may override. Time passes through the device's
clock, so a driver on a ``SimulatedClock`` runs the suites instantly.

Needs pytest and pytest-mock (the ``test`` extra).
"""

from microct.testing.contracts._support import eventually, settle, within
from microct.testing.contracts.axis import AxisContract, AxisFaultContract, UnboundedAxisContract
from microct.testing.contracts.detector import DetectorContract, DetectorFaultContract
from microct.testing.contracts.hooks import AxisHook, DetectorHook, SilenceHook, SourceHook
from microct.testing.contracts.lifecycle import LifecycleContract
from microct.testing.contracts.source import SourceContract, SourceFaultContract

__all__ = ["AxisContract", "AxisFaultContract", "AxisHook", "DetectorContract", "DetectorFaultContract",
           "DetectorHook", "LifecycleContract", "SilenceHook", "SourceContract", "SourceFaultContract", "SourceHook",
           "UnboundedAxisContract", "eventually", "settle", "within"]
