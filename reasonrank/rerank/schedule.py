"""Pure schedules for listwise reranking: which slices of the list each model call sees, in order."""

from __future__ import annotations

from reasonrank.errors import UserError


def sliding_windows(n: int, window_size: int = 20, stride: int = 10, depth: int = 100) -> list[tuple[int, int]]:
    """``(start, end)`` slices, back to front over the top ``min(depth, n)`` candidates.

    The first window covers the bottom of the reranked depth and each next one moves ``stride`` up, so a relevant
    passage can climb from the bottom to the top in one pass; the last window always starts at 0. With 100
    candidates and the defaults: (80, 100), (70, 90), ..., (0, 20): nine calls. Candidates below ``depth`` are
    never shown to the model.
    """
    for name, value in (("window_size", window_size), ("stride", stride), ("depth", depth)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    if n < 0:
        raise ValueError(f"negative number of candidates: {n}")
    end = min(depth, n)
    windows: list[tuple[int, int]] = []
    while end > 0:
        start = max(end - window_size, 0)
        windows.append((start, end))
        if start == 0:
            break
        end -= stride
    return windows
