"""The fault schedule: validation of ``[[simulation.faults]]`` (errors name the field), random schedules
replayed from their seed, and configuration reaching the in-process simulators."""

from __future__ import annotations

import textwrap
from importlib.resources import files

import pytest
from fault_helpers import NO_RECOVERY, SIM, SMALL, merged

from microct.config import load_config, parse_config
from microct.devices.source import SourceState
from microct.errors import ConfigurationError, DeviceFaultError, ScanAborted
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.faults import Fault, FaultSchedule


def config_with(*faults: dict):
    return parse_config(merged(merged(SIM, SMALL), {"simulation": {"faults": list(faults)}}))


@pytest.mark.parametrize("fault, message", [
    ({"kind": "arc", "device": "writer", "at_frame": 1},
     r"simulation\.faults\.0\.device='writer': .*'arc' fault hits 'source', not 'writer'"),
    ({"kind": "frame_dropped", "device": "source", "at_frame": 1}, r"simulation\.faults\.0\.device='source'"),
    ({"kind": "sparks", "device": "source", "at_frame": 1}, r"simulation\.faults\.0\.kind='sparks'"),
    ({"kind": "arc", "device": "source"},
     r"simulation\.faults\.0: .*exactly one trigger of at_s, at_frame, at_projection, probability; got none"),
    ({"kind": "arc", "device": "source", "at_s": 1.0, "at_frame": 2}, r"got at_s, at_frame"),
    ({"kind": "arc", "device": "source", "at_frame": -1}, r"simulation\.faults\.0\.at_frame=-1: .*greater than or"),
    ({"kind": "arc", "device": "source", "probability": 1.5}, r"simulation\.faults\.0\.probability=1\.5"),
    ({"kind": "disk_full", "device": "writer", "at_s": 3.0}, r"simulation\.faults\.0\.at_s=3\.0: .*no device clock"),
    ({"kind": "arc", "device": "source", "at_frame": 1, "seed": 3}, r"simulation\.faults\.0\.seed=3: .*probability"),
    ({"kind": "arc", "device": "source", "at_frame": 1, "repeat": 2}, r"simulation\.faults\.0\.repeat=2"),
    ({"kind": "arc", "device": "source", "at_frame": 1, "duration_s": 2.0},
     r"simulation\.faults\.0\.duration_s=2\.0: .*'arc' fault has no duration"),
    ({"kind": "disconnect", "device": "detector", "at_frame": 1, "duration_s": 2.0, "count": 3},
     r"count requests or duration_s seconds"),
    ({"kind": "arc", "device": "source", "at_frame": 1, "when": "now"}, r"simulation\.faults\.0\.when: unknown key"),
])
def test_bad_fault_tables_are_refused_naming_the_field(fault, message):
    with pytest.raises(ConfigurationError, match=message):
        config_with(fault)


def test_fault_tables_in_a_toml_file_reach_the_simulators(tmp_path):
    path = tmp_path / "scan.toml"
    sim_toml = files("microct.configs").joinpath("sim.toml").read_text()
    assert sim_toml.rstrip().splitlines()[-1].startswith("seed")  # [simulation] is the last table
    path.write_text(sim_toml + textwrap.dedent("""
        [[simulation.faults]]
        kind = "arc"
        device = "source"
        at_projection = 3

        [[simulation.faults]]
        kind = "disk_full"
        device = "writer"
        probability = 0.5
        seed = 7
        """))
    config, _ = load_config(path)
    assert config.simulation.faults == [Fault(kind="arc", device="source", at_projection=3),
                                        Fault(kind="disk_full", device="writer", probability=0.5, seed=7)]
    inst = build_instruments(config)
    schedule = inst.detector.bench.faults
    assert schedule.faults == tuple(config.simulation.faults)
    assert inst.source._faults.schedule is schedule and inst.rotation._faults.schedule is schedule
    inst.source.connect()  # the tube simulator carries out the exposure faults the detector offers it
    schedule.device("source").offer({"arc"}, "a test exposure", 0, 3)
    assert inst.source.read_state() is SourceState.FAULT
    inst.source.close()


def test_no_faults_means_no_schedule():
    assert build_instruments(config_with()).detector.bench.faults is None


ZABER_SAMPLE_OUT = {"driver": "zaber", "connection": "/dev/null", "options": {"stage": "X-LSM100A"}}


@pytest.mark.parametrize("sample_out, overrides, message", [
    (None, {"scan": {"sample_out_position_mm": None}},
     r"simulation\.faults\.0\.device='sample_out': no \[sample_out\] instrument is configured"),
    (ZABER_SAMPLE_OUT, {"simulation": {"clock": "real"}},
     r"simulation\.faults\.0\.device='sample_out': sample_out\.driver='zaber' does not inject faults"),
])
def test_a_fault_no_simulator_takes_is_a_configuration_error(sample_out, overrides, message):
    data = merged(merged(merged(SIM, SMALL), {"sample_out": None}), overrides)
    if sample_out is not None:
        data["sample_out"] = sample_out
    data["simulation"]["faults"] = [{"kind": "stage_stall", "device": "sample_out", "at_s": 1.0}]
    with pytest.raises(ConfigurationError, match=message):
        build_instruments(parse_config(data))


# -- triggers and randomness --------------------------------------------------------------------------------
def opportunities(schedule: FaultSchedule, n: int) -> list[int]:
    """Offer ``n`` frame opportunities to the detector's faults; the frame numbers hit."""
    detector = schedule.attach("detector")
    return [i for i in range(n) if detector.take({"frame_dropped"}, f"frame {i}", i, None) is not None]


def test_random_schedule_replays_from_its_seed():
    fault = {"kind": "frame_dropped", "device": "detector", "probability": 0.1, "repeat": 0}
    first = opportunities(FaultSchedule([{**fault, "seed": 11}]), 400)
    assert first == opportunities(FaultSchedule([{**fault, "seed": 11}]), 400)
    assert first != opportunities(FaultSchedule([{**fault, "seed": 12}]), 400)
    assert 20 <= len(first) <= 60  # about 10 % of 400


def test_random_fault_without_seed_takes_the_simulation_seed_and_its_place():
    fault = {"kind": "frame_dropped", "device": "detector", "probability": 0.2, "repeat": 0}
    a = opportunities(FaultSchedule([fault], seed=5), 200)
    assert a == opportunities(FaultSchedule([fault], seed=5), 200)
    assert a != opportunities(FaultSchedule([fault], seed=6), 200)
    placed_second = FaultSchedule([{"kind": "arc", "device": "source", "at_frame": 0}, fault], seed=5)
    assert opportunities(placed_second, 200) != a


@pytest.mark.parametrize("repeat, count, expected", [(1, 1, 1), (3, 1, 3), (2, 3, 6), (0, 1, 40)])
def test_repeat_limits_the_firings_and_count_the_hits_of_each(repeat, count, expected):
    fault = {"kind": "frame_dropped", "device": "detector", "probability": 1.0, "repeat": repeat, "count": count}
    assert opportunities(FaultSchedule([fault]), 40) == list(range(expected))


@pytest.mark.parametrize("trigger, hits", [({"at_frame": 7}, [7]), ({"at_frame": 7, "count": 3}, [7, 8, 9]),
                                           ({"at_projection": 2}, [])])
def test_frame_trigger_hits_that_frame_and_no_other(trigger, hits):
    fault = {"kind": "frame_timeout", "device": "detector", **trigger}
    schedule = FaultSchedule([fault])
    view = schedule.attach("detector")
    hit = [i for i in range(20) if view.take({"frame_timeout"}, "", i, None) is not None]
    assert hit == hits  # no frame here is a projection (None): a projection trigger never fires


def test_two_faults_on_one_opportunity_hit_one_after_the_other():
    schedule = FaultSchedule([{"kind": "frame_timeout", "device": "detector", "at_frame": 2},
                              {"kind": "frame_dropped", "device": "detector", "at_frame": 2}])
    view = schedule.attach("detector")
    kinds = [getattr(view.take({"frame_timeout", "frame_dropped"}, "", i, None), "kind", None) for i in range(5)]
    assert kinds == [None, None, "frame_timeout", "frame_dropped", None]


def test_a_random_arc_in_a_whole_scan_replays_exactly(make_scan):
    outcomes = []
    for run in range(2):
        config, inst, out = make_scan({"simulation": {"faults": [
            {"kind": "arc", "device": "source", "probability": 0.1, "seed": 1}]}, "scan": {"recovery": NO_RECOVERY}})
        with pytest.raises(ScanAborted) as aborted:
            run_scan(config, inst, out.with_name(f"run{run}.nxs"))
        assert isinstance(aborted.value.__cause__, DeviceFaultError)
        outcomes.append(([(h.time_s, h.what) for h in inst.detector.bench.faults.hits],
                         aborted.value.frames_written))
    assert outcomes[0] == outcomes[1]
    (_, what), = outcomes[0][0]  # one arc: the scan stops there, keeping every frame before it
    assert what == f"exposure of frame {outcomes[0][1]}"
