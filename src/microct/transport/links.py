"""One registry of the links (serial ports, VISA sessions) that several transports share.

The devices of a Zaber daisy chain share one serial port; several PI axes share one controller's VISA
session. Each transport asks the registry for its link by key (``("serial", url)``, ``("visa",
library, resource)``): the first opens it, the others share it, the last to release it closes it.
A shared link carries the lock that makes exchanges atomic, and ``lost``, why an exchange lost it
(the next exchange re-opens it first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar


class SharedLink:
    """What every shared link carries: a re-entrant lock held for whole exchanges (and transactions),
    how many transports use it, and why it was lost (None: it is fine)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users = 0
        self.lost: str | None = None


L = TypeVar("L", bound=SharedLink)


class LinkRegistry(Generic[L]):
    """Shared links by key; thread-safe."""

    def __init__(self) -> None:
        self._links: dict[Hashable, SharedLink] = {}
        self._lock = threading.Lock()

    def acquire(self, key: Hashable, open_link: Callable[[], L]) -> L:
        """The link of ``key``, opened with ``open_link()`` if no transport holds it yet (its errors propagate)."""
        with self._lock:
            link = self._links.get(key)
            if link is None:
                link = self._links[key] = open_link()
            link.users += 1
            return link  # type: ignore[return-value]

    def release(self, key: Hashable, link: L, close: Callable[[L], None]) -> None:
        """One user fewer; ``close(link)`` once none is left."""
        with self._lock:
            link.users -= 1
            if link.users > 0:
                return
            if self._links.get(key) is link:
                del self._links[key]
        close(link)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._links


LINKS: LinkRegistry = LinkRegistry()
"""The process's one registry: serial ports and VISA sessions alike."""
