"""`microct config schema`: the JSON schema of a scan configuration, and of one driver's options."""

from __future__ import annotations

import json

from microct.cli import EXIT_CONFIG, main
from microct.config import ScanConfig
from microct.drivers.zaber.driver import ZaberAxis


def test_prints_the_json_schema_of_a_scan_configuration(capsys):
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {key: value for key, value in schema.items() if key != "$schema"} == ScanConfig.model_json_schema()
    assert set(schema["required"]) == {"source", "rotation", "detector", "geometry", "scan"}
    assert schema["additionalProperties"] is False  # unknown keys are errors, for editors too
    scan = schema["$defs"]["ScanSettings"]["properties"]
    assert scan["n_projections"]["minimum"] == 1 and scan["references_at"]["enum"] == ["start", "end", "both"]
    options = schema["$defs"]["InstrumentConfig"]["properties"]["options"]
    assert "microct config schema --driver NAME" in options["description"]


def test_driver_prints_the_schema_of_that_drivers_options(capsys):
    assert main(["config", "schema", "--driver", "zaber"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == ZaberAxis.Options.__name__
    assert set(schema["properties"]) == set(ZaberAxis.Options.model_fields)
    assert schema["additionalProperties"] is False


def test_an_unknown_driver_is_a_configuration_error_naming_the_registered_ones(capsys):
    assert main(["config", "schema", "--driver", "no-such-driver"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "'no-such-driver' is not a registered driver" in " ".join(err.split())
    assert "zaber" in err and "sim-source" in err
