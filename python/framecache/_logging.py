"""The native core's log events in :mod:`logging`: logger ``framecache`` and one child per
Rust module (``framecache.timeline.read``, ``framecache.tier.disk``, ...).

The native side drops, at the cost of one atomic load, every event less severe than the
threshold this module gives it: the least severe level that the ``framecache`` logger or any
of its children lets through. The threshold is computed again whenever :mod:`logging`
changes a level (``Logger.setLevel``, ``logging.disable``, ``dictConfig``, pytest's
``caplog``): those all clear the manager's level cache, which is where this module hooks
in. A level set by assigning ``Logger.level`` directly is seen at the next such change, or
after :func:`refresh`.
"""

from __future__ import annotations

import atexit
import logging
import os

from framecache import _native

LOGGER = "framecache"


def threshold() -> int:
    """The least severe level (a number) at which some ``framecache`` logger logs."""
    manager = logging.Logger.manager
    levels = [logging.getLogger(LOGGER).getEffectiveLevel()]
    for name, logger in list(manager.loggerDict.items()):
        if name.startswith(LOGGER + ".") and isinstance(logger, logging.Logger) and logger.level:
            levels.append(logger.level)
    return max(min(levels), manager.disable + 1)


def refresh() -> None:
    """Hands the current threshold to the native side."""
    _native._set_log_threshold(threshold())


def _hook_level_changes() -> None:
    manager = logging.Logger.manager
    clear = getattr(manager, "_clear_cache", None)
    if clear is None or getattr(clear, "_framecache", False):
        return

    def clear_cache_and_refresh() -> None:
        clear()
        refresh()

    clear_cache_and_refresh._framecache = True  # type: ignore[attr-defined]
    manager._clear_cache = clear_cache_and_refresh


def install() -> None:
    """Routes the native events to :mod:`logging` in this process and its forked children."""
    _hook_level_changes()
    refresh()
    # A forked child queues events again once its interpreter is usable.
    os.register_at_fork(after_in_child=_native._logs_after_fork)
    # Registered before the package's other exit hooks, so it runs after them (the raw
    # frame writer's last warnings included), and before the interpreter finalizes.
    atexit.register(_native._close_logs)
