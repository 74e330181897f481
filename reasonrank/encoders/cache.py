"""A persistent, content-addressed embedding cache: (encoder key, text) → float32 vector.

A rerun, a second reranker over the same candidates, a cascade stage or a dense first stage over a corpus the
bi-encoder already read never encodes the same text twice. Entries live in one SQLite file in WAL mode
(``$REASONRANK_CACHE/embeddings.sqlite3``): SQLite commits each batch of vectors atomically, so a process killed
with SIGKILL mid-write leaves either the whole batch or none of it, never a torn row, and any number of
processes may read and write the file at once (writers queue on SQLite's lock, readers never block). Every row
also stores its vector's length, and a row whose blob does not match is treated as missing.

The encoder key names everything a vector depends on besides the text: the weights (see
:func:`reasonrank.encoders.fingerprint`), pooling, the length limit and the execution path (torch or
ONNX Runtime, and its precision), so two paths never mix their vectors.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reasonrank.errors import UserError

CACHE_FILE = "embeddings.sqlite3"
# SQLite allows 32,766 host parameters per statement; lookups go in chunks well below it.
_LOOKUP_CHUNK = 900
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    encoder TEXT NOT NULL,
    digest BLOB NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (encoder, digest)
) WITHOUT ROWID
"""


def text_digest(text: str) -> bytes:
    """The content address of a text: SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def default_cache_path() -> Path:
    from reasonrank.io.corpus import cache_root

    return cache_root() / CACHE_FILE


def cache_enabled() -> bool:
    """``REASONRANK_EMBEDDING_CACHE=0`` switches the cache off (e.g. to time cold encoding)."""
    return os.environ.get("REASONRANK_EMBEDDING_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


class EmbeddingCache:
    """Vectors by (encoder key, text digest) in an SQLite file shared by every process on the machine."""

    def __init__(self, path: str | Path | None = None, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self._lock = threading.Lock()  # one connection per process, shared by its threads (e.g. the server's)
        self._connection: sqlite3.Connection | None = None
        self._pid = -1

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a crashed process loses nothing committed; a power cut may lose the last commits
            # but never tears one. Lost vectors are simply encoded again.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UserError(
                f"embedding cache {self.path}: {error}; delete the file (it only holds vectors that can be "
                "recomputed) or set REASONRANK_EMBEDDING_CACHE=0"
            ) from error
        self._connection, self._pid = connection, os.getpid()  # a forked child opens its own connection
        return connection

    def get(self, encoder: str, digests: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``digests`` (missing ones are absent from the result)."""
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(digests))
        with self._lock:
            connection = self._connect()
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                rows = connection.execute(
                    f"SELECT digest, dimension, vector FROM vectors WHERE encoder = ? AND digest IN "
                    f"({','.join('?' * len(chunk))})",
                    (encoder, *chunk),
                )
                for digest, dimension, blob in rows:
                    if len(blob) == dimension * 4:  # a row that does not hold its whole vector is never used
                        found[digest] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, encoder: str, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per digest) in one transaction; existing entries are kept."""
        if len(digests) != len(vectors):
            raise ValueError(f"{len(digests)} digests for {len(vectors)} vectors")
        rows = [
            (encoder, digest, int(vector.shape[0]), np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            for digest, vector in zip(digests, vectors, strict=True)
        ]
        with self._lock:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT OR IGNORE INTO vectors (encoder, digest, dimension, vector) VALUES (?, ?, ?, ?)", rows
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def count(self, encoder: str | None = None) -> int:
        with self._lock:
            connection = self._connect()
            if encoder is None:
                return connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            return connection.execute("SELECT COUNT(*) FROM vectors WHERE encoder = ?", (encoder,)).fetchone()[0]

    def encode(
        self, encoder: str, texts: Sequence[str], compute: Callable[[Sequence[str]], np.ndarray], dimension: int
    ) -> np.ndarray:
        """Vectors for ``texts``: cached ones read back, the rest computed by ``compute`` (once per distinct text)
        and stored."""
        digests = [text_digest(text) for text in texts]
        found = self.get(encoder, digests)
        missing = list(dict.fromkeys(d for d in digests if d not in found))
        if missing:
            first_text = {}
            for digest, text in zip(digests, texts, strict=True):
                first_text.setdefault(digest, text)
            computed = np.asarray(compute([first_text[d] for d in missing]), dtype=np.float32)
            self.put(encoder, missing, computed)
            found.update(zip(missing, computed, strict=True))
        if not texts:
            return np.empty((0, dimension), dtype=np.float32)
        return np.stack([found[digest] for digest in digests]).astype(np.float32, copy=False)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None
