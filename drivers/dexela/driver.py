"""The ``dexela`` driver: ``DexelaOptions`` and ``DexelaDetector`` (register protocol and frame channel in
``codec``, panel figures in ``models``, the frame channel's host end in ``grabber``). The register
protocol is derived from open-source drivers, not a vendor document (docs/protocols/dexela-serial.md,
"notes"): check exposure and trigger behaviour on a real unit.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from microct.driverkit import (
    Clock,
    CommunicationError,
    ConfigurationError,
    Detector,
    DetectorCapabilities,
    DeviceTimeoutError,
    DriverOptions,
    Finding,
    Frame,
    ProtocolError,
    SerialSettings,
    SerialTransport,
    Transport,
    TriggerMode,
)
from microct.drivers.dexela import codec, models
from microct.drivers.dexela.grabber import FolderChannel, FrameChannel, StreamChannel


class DexelaOptions(DriverOptions):
    """``[detector.options]`` of the ``dexela`` driver. ``serial`` fields left out: 115200 baud, CR both ways."""

    rows: int = Field(default=models.TILE_ROWS, ge=1, le=16384, description="frame rows (default: one 1024 × "
                      "1024 sensor tile of a Dexela 2923, notes)")
    columns: int = Field(default=models.TILE_COLUMNS, ge=1, le=16384, description="frame columns (default: one 1024 × "
                         "1024 sensor tile of a Dexela 2923, notes); a frame of another size is a ProtocolError")
    pixel_pitch_um: float = Field(default=models.PIXEL_PITCH_UM, gt=0,
                                  description="pixel pitch; default: 74.8 µm, a Dexela panel's x_pixel_size "
                                  "(0.0748 mm) in public APS USAXS code, taken for the 2923 too (the notes give "
                                  "none): check yours")
    exposure_range_s: tuple[float, float] = Field(default=(0.001, 60.0), description="allowed exposures (s); "
                                                  "intersected with the registers' 10 µs to 2³²−1 × 10 µs")
    full_well: Literal["low-noise", "high-range"] = Field(default="low-noise", description="full-well mode, written "
                                                          "at the first use: register 3 bit 0x4 clear ('low-noise') or "
                                                          "set ('high-range', high full well)")
    external_trigger: Literal["edge", "duration"] = Field(default="edge", description="register 0 code for "
                                                          "TriggerMode.EXTERNAL")
    verify_writes: bool = Field(default=False, description="read each written register back (real units "
                                                           "have been seen to read zeros: off by default)")
    serial: SerialSettings = Field(default_factory=SerialSettings, validate_default=True,
                                   description="the serial line; the baud rate defaults to the notes' 115200")
    frame_channel: Literal["folder", "tcp"] = Field(default="folder", description="how frames come from the frame "
                                                    "grabber (microct's own channel, not a Dexela protocol): 'folder' "
                                                    "(trigger and .raw files in frame_folder) or 'tcp' (a stream at "
                                                    "frame_address)")
    frame_folder: str | None = Field(default=None, description="folder the frame grabber writes into")
    frame_address: str | None = Field(default=None, description="host:port of the frame stream")
    keep_files: bool = Field(default=False, description="keep frame files after reading them")
    readout_margin_s: float = Field(default=2.0, gt=0, description="time allowed beyond the exposure for a frame "
                                                                   "to be read out and arrive (s)")
    external_timeout_s: float = Field(default=60.0, gt=0, description="wait per frame in external-trigger "
                                                                      "mode (s)")
    poll_interval_s: float = Field(default=0.002, gt=0, description="frame-folder polling period (s)")

    @field_validator("serial")
    @classmethod
    def _dexela_baud_by_default(cls, serial: SerialSettings) -> SerialSettings:
        return serial.with_defaults(baudrate=codec.BAUDRATE)

    @model_validator(mode="after")
    def _consistent(self):
        self.exposure_range()
        if self.frame_channel == "folder" and not self.frame_folder:
            raise ValueError("frame_channel='folder' needs frame_folder (the folder the frame grabber writes into)")
        if self.frame_channel == "tcp":
            host, _, port = (self.frame_address or "").rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"frame_address={self.frame_address!r}: frame_channel='tcp' needs 'host:port'")
        return self

    def exposure_range(self) -> tuple[float, float]:
        """The configured range within what the registers hold; ValueError if they do not overlap."""
        registers = codec.EXPOSURE_RANGE_S
        low, high = max(self.exposure_range_s[0], registers[0]), min(self.exposure_range_s[1], registers[1])
        if not 0 < low <= high:
            raise ValueError(f"exposure_range_s={self.exposure_range_s}: must lie within {registers[0]:g}-"
                             f"{registers[1]:g} s (the exposure registers), low <= high")
        return low, high


class DexelaDetector(Detector):
    """A Dexela CMOS flat panel: settings in registers over a serial line (a port or a ``socket://`` URL),
    frames from the frame channel.

    The driver keeps its own record of every register it wrote and writes a register only when its
    value changes (the notes: read-back is unreliable on real units). Register 0 and 3 are
    read-modified-written from that record, which starts at 0 on each connect. Exposures are whole
    10 µs units: ``exposure_s`` holds the value asked for, ``describe()["exposure_ticks"]`` what was
    written. Binning: 1 only (the binning register is not documented publicly). Trigger modes:
    SOFTWARE (a trigger per frame through the frame channel) and EXTERNAL (edge or duration, option
    ``external_trigger``; frames come when the trigger input fires). Frames: uint16, 16 bits.
    """

    backend = "serial"
    Options = DexelaOptions

    def __init__(self, name: str, options: DexelaOptions, connection: str | None = None,
                 transport: Transport | None = None, frames: FrameChannel | None = None,
                 clock: Clock | None = None) -> None:
        self.options = opts = options
        super().__init__(name, DetectorCapabilities(
            shape=(opts.rows, opts.columns), pixel_pitch_um=opts.pixel_pitch_um, bit_depth=models.BIT_DEPTH,
            exposure_range_s=opts.exposure_range(), binnings=(1,),
            trigger_modes=(TriggerMode.SOFTWARE, TriggerMode.EXTERNAL)), clock)
        if transport is None and not connection:
            raise ConfigurationError(f"detector {name!r}: a Dexela needs a connection (serial port or URL)")
        self._transport = transport or SerialTransport(connection, opts.serial, connection)
        self._frames = frames or self._frame_channel()
        self._registers: dict[int, int] = {}
        self._next_frame = 0

    # -- protocol --------------------------------------------------------------------------------------
    def _query(self, message: bytes, what: str) -> bytes:
        """One command, one reply line; link errors name the command and ``what`` it was for."""
        try:
            return self._transport.query(message)[0]
        except (CommunicationError, DeviceTimeoutError) as error:
            raise self._error(type(error), f"Dexela {message.decode()!r} ({what}) failed: {error}") from None

    def _write(self, register: int, value: int) -> None:
        """Write ``register`` unless the record shows it already holds ``value``; ProtocolError on ``E``."""
        if self._registers.get(register) == value:
            return
        message = codec.encode_write(register, value)
        what = f"{codec.register_name(register)} = {value}"
        try:
            done = codec.parse_write_reply(self._query(message, what))
        except ProtocolError as error:
            raise self._error(ProtocolError, f"Dexela {message.decode()!r} ({what}): {error}") from None
        if not done:
            raise self._error(ProtocolError, f"Dexela refused {message.decode()!r}: {what} (reply E)")
        self._registers[register] = value
        if self.options.verify_writes:
            self._verify(register, value)

    def _verify(self, register: int, value: int) -> None:
        message = codec.encode_read(register)
        try:
            read = codec.parse_read_reply(self._query(message, f"read-back of {codec.register_name(register)}"))
        except ProtocolError as error:
            raise self._error(ProtocolError, f"Dexela {message.decode()!r}: {error}") from None
        if read != value:
            raise self._error(ProtocolError, f"Dexela {codec.register_name(register)} reads back "
                                             f"{'E' if read is None else read} after writing {value} "
                                             f"(read-back is unreliable on some units: verify_writes = false)")

    # -- hooks -----------------------------------------------------------------------------------------
    def _frame_channel(self) -> FrameChannel:
        """The channel the options name; a frame folder is looked at on the device's clock."""
        if self.options.frame_channel == "tcp":
            return StreamChannel(self.options.frame_address)
        return FolderChannel(self.options.frame_folder, self.options.keep_files, self.options.poll_interval_s,
                             clock=self.clock)

    def _do_connect(self) -> None:
        self._registers.clear()  # the detector may have been power-cycled: write everything again
        self._transport.open()
        self._next_frame = self._frames.open()

    def _do_prepare(self) -> None:
        """Wake the detector (``WC1``) and set the full-well mode: at the first setter or acquisition after
        connect, which writes nothing (then the held settings follow)."""
        reply = self._query(codec.WAKE, "wake-up")
        if reply != codec.OK:
            raise self._error(ProtocolError, f"Dexela {codec.WAKE.decode()!r} (wake-up) answered {reply!r}, not X")
        register3 = self._registers.get(codec.FULL_WELL_REGISTER, 0)
        self._write(codec.FULL_WELL_REGISTER, codec.with_full_well(register3, self.options.full_well == "high-range"))

    def _do_close(self) -> None:
        try:
            self._frames.close()
        finally:
            self._transport.close()

    def _do_set_exposure_s(self, exposure_s: float) -> None:
        low, high = codec.split_words(codec.exposure_to_ticks(exposure_s))
        self._write(codec.EXPOSURE_LOW_REGISTER, low)
        self._write(codec.EXPOSURE_HIGH_REGISTER, high)

    def _do_set_binning(self, binning: int) -> None:
        pass  # 1 only: nothing to write (the binning register is not documented publicly, notes)

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        code = codec.TRIGGER_CODES["software" if mode is TriggerMode.SOFTWARE else self.options.external_trigger]
        register0 = self._registers.get(codec.TRIGGER_REGISTER, 0)
        self._write(codec.TRIGGER_REGISTER, codec.with_trigger_code(register0, code))

    def _do_acquire(self, n: int) -> list[Frame]:
        """Per frame: trigger it (SOFTWARE) or await it (EXTERNAL) on the frame channel, then read it.

        A frame not there within ``readout_margin_s`` after its exposure (EXTERNAL: after
        ``external_timeout_s``) is a DeviceTimeoutError naming the frame and the channel.
        """
        software = self.trigger_mode is TriggerMode.SOFTWARE
        wait_s = self.exposure_ticks * codec.EXPOSURE_TICK_S if software else self.options.external_timeout_s
        timeout_s = wait_s + self.options.readout_margin_s
        taken = []
        for _ in range(n):
            wanted = self._next_frame
            try:
                self._frames.request(wanted if software else None, wait_s)
                number, pixels = self._frames.receive(wanted, self.shape, timeout_s)
            except (CommunicationError, DeviceTimeoutError, ProtocolError) as error:
                if software:
                    self._next_frame = wanted + 1  # a triggered number is not reused, even if its frame is lost
                raise self._error(type(error), str(error)) from None
            if software and number != wanted:
                raise self._error(ProtocolError, f"{self._frames.description}: got frame {number} for the "
                                                 f"trigger of frame {wanted}")
            self._next_frame = number + 1
            taken.append(Frame(pixels, number, self.clock.time()))
        return taken

    @property
    def exposure_ticks(self) -> int:
        """The exposure as written: whole 10 µs units."""
        return codec.exposure_to_ticks(self.exposure_s)

    def _do_check(self) -> list[Finding]:
        """What connect could see: the link and the frame channel open (its next frame number); the
        registers are not read (notes: read-back is unreliable, and nothing reports the panel's state)."""
        return [*super()._do_check(),
                Finding("ok", "frame_channel", f"{self._frames.description}: open, next frame {self._next_frame}"),
                Finding("ok", "registers", "not read (the register protocol has no status query, and read-back "
                                           "is unreliable); WC1 and the settings go out at the first use")]

    def _do_describe(self) -> dict[str, Any]:
        return {**super()._do_describe(), "full_well": self.options.full_well,
                "exposure_ticks": self.exposure_ticks, "frame_channel": self._frames.description}
