"""The source contract and source fault contract over the Spellman's serial link: an ASRL resource through
pyvisa-py on a pseudo-terminal, every frame carrying its checksum (the generator's RS-232 port). The
same contracts over TCPIP SOCKET, for the XRV and the uX: test_spellman_wire.py."""

from __future__ import annotations

from test_spellman_wire import _ContractOverVisa, readback_tolerance


class TestContractXRVOverAsrl(_ContractOverVisa):
    model = "XRV160"
    serial = True  # the simulated generator checks and sends checksums; the driver's default on ASRL
    link = "pty"
    current_tolerance_ua = readback_tolerance(30000, 1.2)

    @classmethod
    def resource(cls, address: str) -> str:
        return f"ASRL{address}::INSTR"
