"""The one path rule of every command: no output may be one of its inputs, lie inside an input folder, or be
another output.

Commands call :func:`check_paths` with every input and output they will touch before any work. Paths are compared
as files, not as strings: relative spellings, ``..``, symlinks and hard links of one file are the same file. An
input that is no local path (a Pyserini name, ``irds:``, a hub id) cannot collide and is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from reasonrank.errors import UserError

# (flag, path): the flag as the user wrote it (``--output``, or a config key), the path or None when not given.
Named = tuple[str, "str | Path | None"]


def _real(path: str | Path) -> Path:
    """The absolute path with every symlink of its existing part resolved (a file yet to be written included)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name one file or folder: one inode where both exist (hard links), else one real path."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return _real(a) == _real(b)


def lies_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is somewhere below ``folder`` (symlinks resolved), not ``folder`` itself."""
    real, root = _real(path), _real(folder)
    return real != root and real.is_relative_to(root)


def _bare(flag: str) -> str:
    """A config setting's name without the ``(file:line)`` it is named with."""
    return flag.split(" (", 1)[0]


def _given(named: Iterable[Named]) -> list[tuple[str, Path]]:
    return [(flag, Path(path)) for flag, path in named if path is not None and str(path) != ""]


def check_paths(inputs: Iterable[Named], outputs: Iterable[Named]) -> None:
    """Refuse, in one line naming both flags, an output that is an input, lies inside an input folder, or is another
    output; inputs that do not exist as local paths are names of something else and are left alone."""
    sources = [(flag, path) for flag, path in _given(inputs) if path.expanduser().exists()]
    outputs = list(outputs)
    empty = next((flag for flag, path in outputs if path is not None and str(path).strip() == ""), None)
    if empty is not None:
        raise UserError(f"{empty} is empty: pass the path to write")
    targets = _given(outputs)
    for position, (flag, path) in enumerate(targets):
        for source_flag, source in sources:
            if same_file(path, source):
                raise UserError(f"{flag} {path} is the same file as {source_flag} {source}, which the command "
                                f"reads: writing it would destroy that input; pass another {_bare(flag)}")
            if source.expanduser().is_dir() and lies_inside(path, source):
                raise UserError(f"{flag} {path} lies inside the {source_flag} folder {source}, which the command "
                                f"reads: pass a {_bare(flag)} outside it")
        for other_flag, other in targets[:position]:
            if same_file(path, other):
                raise UserError(f"{flag} {path} is the same file as {other_flag} {other}: each output needs its own "
                                "path, or one would overwrite the other")


def check_distinct(flag: str, paths: Iterable[str | Path]) -> None:
    """Refuse one file given twice to a flag that takes several (e.g. ``merge --runs A A``)."""
    seen: list[Path] = []
    for path in map(Path, paths):
        twin = next((earlier for earlier in seen if same_file(path, earlier)), None)
        if twin is not None:
            raise UserError(f"{flag} names the file {twin} twice (as {twin} and {path}): pass each file once")
        seen.append(path)
