"""Settings for the whole suite."""

import signal


def pytest_configure(config):
    # A shell without job control starts a background job with SIGINT ignored (POSIX), and Python then
    # keeps it ignored: the Ctrl-C tests (in this process and in the CLI's child processes, which inherit
    # the disposition) would see no KeyboardInterrupt. Give the suite a terminal's Ctrl-C.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
