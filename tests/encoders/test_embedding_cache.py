"""The persistent embedding cache: content addressing, concurrent writers, and kill -9 in the middle of writes."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest

from reasonrank.encoders.cache import EmbeddingCache, text_digest

ROOT = Path(__file__).resolve().parents[2]


def vector_for(text: str, dimension: int = 384) -> np.ndarray:
    """A vector that can be recomputed from the text alone, so any stored row can be checked."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)


def test_vectors_come_back_by_content_and_each_text_is_computed_once(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite3")
    computed: list[str] = []

    def compute(texts):
        computed.extend(texts)
        return np.stack([vector_for(t) for t in texts])

    first = cache.encode("model-a", ["x", "y", "x"], compute, 384)
    assert computed == ["x", "y"]  # the repeated text is encoded once
    np.testing.assert_array_equal(first, np.stack([vector_for(t) for t in ["x", "y", "x"]]))
    second = cache.encode("model-a", ["y", "z"], compute, 384)
    assert computed == ["x", "y", "z"]  # y came back from the cache
    np.testing.assert_array_equal(second[0], first[1])
    cache.encode("model-b", ["x"], compute, 384)  # another encoder never reads model-a's vectors
    assert computed == ["x", "y", "z", "x"]
    assert cache.count("model-a") == 3 and cache.count() == 4
    assert cache.encode("model-a", [], compute, 384).shape == (0, 384)


def test_a_row_that_does_not_hold_its_whole_vector_is_never_read(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite3")
    cache.put("m", [text_digest("whole")], vector_for("whole")[None])
    with sqlite3.connect(tmp_path / "e.sqlite3") as connection:  # a row cut short, as a torn write would leave it
        torn = ("m", text_digest("torn"), 384, vector_for("torn").tobytes()[:100])
        connection.execute("INSERT INTO vectors VALUES (?, ?, ?, ?)", torn)
    found = cache.get("m", [text_digest("whole"), text_digest("torn")])
    assert list(found) == [text_digest("whole")]
    recomputed = cache.encode("m", ["torn"], lambda texts: np.stack([vector_for(t) for t in texts]), 384)
    np.testing.assert_array_equal(recomputed[0], vector_for("torn"))


def _writer(path: str, worker: int) -> None:
    cache = EmbeddingCache(path)
    for round_ in range(20):
        texts = [f"passage {(worker * 7 + round_ * 13 + i) % 300}" for i in range(25)]  # overlaps other workers
        cache.encode("shared", texts, lambda missing: np.stack([vector_for(t) for t in missing]), 384)


def test_concurrent_processes_share_one_cache(tmp_path):
    path = str(tmp_path / "e.sqlite3")
    context = get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, worker)) for worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    cache = EmbeddingCache(path)
    texts = [f"passage {i}" for i in range(300)]
    found = cache.get("shared", [text_digest(t) for t in texts])
    assert 0 < len(found) == cache.count("shared")
    for text in texts:
        if text_digest(text) in found:
            np.testing.assert_array_equal(found[text_digest(text)], vector_for(text))


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    sys.path.insert(0, sys.argv[3])
    from test_embedding_cache import vector_for
    from reasonrank.encoders.cache import EmbeddingCache
    cache = EmbeddingCache(sys.argv[1])
    batch = 0
    while True:  # until killed: batches of 500 vectors, each batch one transaction
        texts = [f"text {batch} {i}" for i in range(500)]
        cache.encode("killed", texts, lambda missing: __import__("numpy").stack([vector_for(t) for t in missing]), 384)
        batch += 1
    """
)


def test_kill_9_mid_write_never_leaves_a_torn_entry(tmp_path):
    path = tmp_path / "e.sqlite3"
    for kill_after in (0.4, 1.1, 1.7):  # three writers, each killed at a different point of its writes
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(path), str(Path(__file__).parent), str(ROOT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not path.exists() or EmbeddingCache(path).count("killed") < 500):
            assert writer.poll() is None, writer.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(kill_after)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert writer.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute("SELECT digest, dimension, vector FROM vectors").fetchall()
    assert len(rows) >= 500 and len(rows) % 500 == 0  # whole transactions only
    by_digest = {text_digest(f"text {b} {i}"): f"text {b} {i}" for b in range(len(rows) // 500 + 1) for i in range(500)}
    for digest, dimension, blob in rows:
        assert dimension == 384
        np.testing.assert_array_equal(np.frombuffer(blob, dtype=np.float32), vector_for(by_digest[digest]))


def test_a_file_that_is_not_a_cache_is_one_clear_error(tmp_path):
    from reasonrank.errors import UserError

    path = tmp_path / "e.sqlite3"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(UserError, match=r"embedding cache .*delete the file"):
        EmbeddingCache(path).count()
