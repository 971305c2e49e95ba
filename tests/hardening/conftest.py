"""Hypothesis profiles of the hardening tests.

``hardening`` (default): sized so that the whole folder runs in well under a minute on two cores.
``hardening-long``: twenty times the examples, for a night run or after changing a codec::

    MICROCT_HYPOTHESIS_PROFILE=hardening-long python -m pytest -q tests/hardening

The deadline is the "never hangs" half of the property: a parser taking 200 ms over a reply of a
few kilobytes is a bug (a catastrophic regular expression, a runaway loop). No example database is
written (the tree is shared); a failure prints the example and the ``@reproduce_failure`` blob.
"""

import os
from datetime import timedelta

from hypothesis import settings

settings.register_profile("hardening", max_examples=120, deadline=timedelta(milliseconds=200), database=None,
                          print_blob=True)
settings.register_profile("hardening-long", parent=settings.get_profile("hardening"), max_examples=2400)
settings.load_profile(os.environ.get("MICROCT_HYPOTHESIS_PROFILE", "hardening"))
