"""Map-style datasets over cached frames, for worker pools (``multiprocessing``, PyTorch's
``DataLoader``).

A dataset holds only plain data (the items and the :class:`~framecache.FrameCache`
keywords), so it pickles to any worker, whatever the start method (fork, spawn,
forkserver). Each worker process opens its own ``FrameCache`` on first use; every process on
the machine shares the disk tiers, so N workers over one timeline download each frame once
and decode it once per machine.

A seq a timeline lacks raises :class:`~framecache.MissingFrameError` naming it, as every
read of a selection does. Items and batches are reads of selections: each revalidates
with the listing page covering its frames (one request per batch, not per frame), or
none within the cache's ``revalidate_after`` window (see docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from framecache._errors import InvalidInputError

Output = Literal["array", "frame", "tensor"]

_OUTPUTS = ("array", "frame", "tensor")


class _Lazy:
    """The plain-data half shared by both datasets: cache keywords, output form, and the
    per-process cache opened on first use (never pickled)."""

    def __init__(
        self,
        cache: Mapping[str, Any] | None,
        output: Output,
        scale: int,
        writeable: bool,
    ) -> None:
        if output not in _OUTPUTS:
            raise InvalidInputError(
                f"invalid output {output!r}: must be one of {', '.join(_OUTPUTS)}"
            )
        self.cache_options = dict(cache or {})
        self.output = output
        self.scale = scale
        self.writeable = writeable
        self._cache: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    @property
    def cache(self):
        """This process's ``FrameCache``, opened on first use. A forked child may inherit
        one: a ``FrameCache`` rebuilds its runtime and handles in a new process itself."""
        if self._cache is None:
            from framecache import FrameCache

            self._cache = FrameCache(**self.cache_options)
        return self._cache

    def _convert(self, frame):
        if self.output == "frame":
            return frame
        if self.output == "tensor":
            import torch  # only when asked for: torch is not a dependency

            # Shares the frame's buffer: no copy.
            return torch.from_numpy(frame.image)
        return frame.image


class FrameDataset(_Lazy, Sequence):
    """One frame per item, from ``(timeline, seq)`` pairs.

    ``dataset[i]`` is the image of the i-th pair: an H×W×3 ``uint8`` array (``output="array"``),
    the :class:`~framecache.Frame` (``"frame"``), or a ``torch`` tensor sharing the array's
    memory (``"tensor"``; torch must be importable in the worker). ``cache`` holds the
    ``FrameCache`` keywords (``None``: the environment's settings); ``scale`` and
    ``writeable`` are as in ``load_frames``.
    """

    def __init__(
        self,
        items: Iterable[tuple[str, int]],
        *,
        cache: Mapping[str, Any] | None = None,
        output: Output = "array",
        scale: int = 1,
        writeable: bool = True,
    ) -> None:
        super().__init__(cache, output, scale, writeable)
        self.items = [(str(tl), int(seq)) for tl, seq in items]

    @classmethod
    def over_timelines(
        cls,
        timelines: Iterable[str] | Mapping[str, Iterable[int]],
        **kwargs: Any,
    ) -> FrameDataset:
        """Every frame of each timeline (listed once, here), or, given a mapping, the seqs it
        names per timeline (``{"tl": range(50_000, 50_300)}``: nothing is listed)."""
        dataset = cls([], **kwargs)
        if isinstance(timelines, Mapping):
            dataset.items = [(tl, int(s)) for tl, seqs in timelines.items() for s in seqs]
        else:
            dataset.items = [
                (tl, entry["seq"]) for tl in timelines for entry in dataset.cache.list_frames(tl)
            ]
        return dataset

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        timeline, seq = self.items[index]
        # A selection of one: revalidated by the listing page covering it (which also lists
        # the manifest's version), shared with the batches around it; never a stat per item.
        (frame,) = self.cache.load_frames(
            timeline, seqs=[seq], writeable=self.writeable, scale=self.scale
        )
        return self._convert(frame)

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """A batch (PyTorch's batched fetch): each timeline's frames in one read."""
        by_timeline: dict[str, list[int]] = {}
        for i in indices:
            timeline, seq = self.items[i]
            by_timeline.setdefault(timeline, []).append(seq)
        loaded: dict[tuple[str, int], Any] = {}
        for timeline, seqs in by_timeline.items():
            for frame in self.cache.load_frames(
                timeline, seqs=seqs, writeable=self.writeable, scale=self.scale
            ):
                loaded[(timeline, frame.sequence)] = frame
        return [self._convert(loaded[self.items[i]]) for i in indices]


class TimelineDataset(_Lazy, Sequence):
    """One whole timeline (or the seqs ``seqs`` names of each) per item: ``dataset[i]`` is
    the list of its frames, converted as :class:`FrameDataset` converts one."""

    def __init__(
        self,
        timelines: Iterable[str],
        *,
        seqs: Iterable[int] | None = None,
        cache: Mapping[str, Any] | None = None,
        output: Output = "array",
        scale: int = 1,
        writeable: bool = True,
    ) -> None:
        super().__init__(cache, output, scale, writeable)
        self.timelines = [str(tl) for tl in timelines]
        self.seqs = None if seqs is None else [int(s) for s in seqs]

    def __len__(self) -> int:
        return len(self.timelines)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        frames = self.cache.load_frames(
            self.timelines[index],
            seqs=self.seqs,
            writeable=self.writeable,
            scale=self.scale,
        )
        return [self._convert(f) for f in frames]


__all__ = ["FrameDataset", "TimelineDataset"]
