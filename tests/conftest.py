"""Settings for the whole suite."""

import os
import shutil
import signal
import tempfile


def pytest_configure(config):
    # A shell without job control starts a background job with SIGINT ignored (POSIX), and Python then
    # keeps it ignored: the Ctrl-C tests (in this process and in the CLI's child processes, which inherit
    # the disposition) would see no KeyboardInterrupt. Give the suite a terminal's Ctrl-C.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # The instrument locks of this suite in a folder of its own (microct.locks): another copy of the suite
    # running at the same time serves its simulators under the same PV prefixes and names.
    if not os.environ.get("MICROCT_LOCK_FOLDER"):
        os.environ["MICROCT_LOCK_FOLDER"] = config._microct_locks = tempfile.mkdtemp(prefix="microct-test-locks-")


def pytest_unconfigure(config):
    folder = getattr(config, "_microct_locks", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
