"""What a simulator author needs, in one place (no pytest here): serve a line protocol, model a stage,
a tube or a panel in software, play scheduled faults, and register the simulator for ``microct sim
serve``.

A plug-in package's wire simulator is a responder (``respond(line) -> list of reply bytes``, and
``request_terminators``) driving one of the in-process models below, registered in the entry-point
group ``microct.simulators`` as a ``WireSimulator``::

    SIMULATOR = WireSimulator(MyStageResponder, "My stage controller (RS-232)")

``MyStageResponder(**options)`` takes the ``-O KEY=VALUE`` options of ``microct sim serve`` (and
``faults=``, a FaultSchedule, when ``--faults`` is given). Give the driver's fault contract a hook:
``SimulatedAxis.fault_hook(mute=lambda muted: setattr(server, "muted", muted))``.
"""

from microct.simulators.axis import SimulatedAxis, SimulatedAxisHook, SimulatedAxisOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorHook, SimulatedDetectorOptions
from microct.simulators.faults import DeviceFaults, FaultSchedule
from microct.simulators.source import SimulatedSource, SimulatedSourceHook, SimulatedSourceOptions
from microct.simulators.wire import LOOPBACK, Connection, Responder, WireServer, WireSimulator, stopped_by_limit_switch

__all__ = ["LOOPBACK", "Bench", "Connection", "DeviceFaults", "FaultSchedule", "Responder", "SimulatedAxis",
           "SimulatedAxisHook", "SimulatedAxisOptions", "SimulatedDetector", "SimulatedDetectorHook",
           "SimulatedDetectorOptions", "SimulatedSource", "SimulatedSourceHook", "SimulatedSourceOptions",
           "WireServer", "WireSimulator", "stopped_by_limit_switch"]
