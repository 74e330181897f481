"""``reasonrank.search --ray`` on a real two-node Ray cluster on this machine: a reranker actor's worker process is
killed mid-run, a replacement redoes its unfinished queries, and the run and explanations equal the single-process
run's byte for byte (no query lost, none written twice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reasonrank.cli.search import main as search
from reasonrank.errors import EXIT_USER_ERROR
from reasonrank.pipeline import embedded_collection

pytestmark = pytest.mark.slow  # one Ray cluster (two raylets) for the module

ROOT = Path(__file__).resolve().parents[2]
BUSY_ACTOR = b"ray::RerankerActor.rerank_shard"  # Ray's process title while an actor runs that method
# A driver's ray.init rewrites a loopback cluster address to the host's own IP (services.resolve_ip_for_localhost,
# ray 2.60), where a loopback-only cluster does not listen; with Ray's "no multi-node clusters" switch (meant for
# Windows and macOS) that lookup answers 127.0.0.1, so the driver stays on loopback too (docs/scale-out.md).
LOOPBACK_DRIVER = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture(scope="module")
def cluster_address():
    """A Ray head and one worker node on this machine, one CPU each: two reranker actors in all, every Ray
    process listening on 127.0.0.1 only (``node_ip_address``; the driver's side is :data:`LOOPBACK_DRIVER`)."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as patch:
        # The raylets start the actors' worker processes with this environment: offline, this checkout first.
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        head = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            cluster.wait_for_nodes()
            assert [node.node_ip_address for node in cluster.list_all_nodes()] == ["127.0.0.1"] * 2
            yield cluster.address
        finally:
            cluster.shutdown()


def busy_actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(BUSY_ACTOR):
                pids.append(int(entry.name))
    return pids


def test_killed_worker_is_replaced_and_the_run_equals_the_single_process_run(cluster_address, tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(embedded_collection().topics.read_text().splitlines(keepends=True)[:12]))
    # The default reranker with its evidence step: the actors open the first stage's index to score sentences by BM25.
    # 100 passages a query keeps each actor busy long enough (tenths of a second per query) to be killed mid-shard on
    # an idle machine; at 10 the whole run could end between two polls.
    common = ["--topics", str(topics), "--reranker", "minilm-hybrid", "--hits", "100", "--rerank-depth", "100",
              "--batch-size", "2", "--quiet"]
    # CPU float rounding depends on the number of intra-op threads, and Ray gives each actor as many as it reserves
    # CPUs (one): the single-process reference runs with one thread too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert search([*common, "--output", str(tmp_path / "single.txt"),
                       "--explanations", str(tmp_path / "single.jsonl")]) == 0
    finally:
        torch.set_num_threads(threads)

    env = {**os.environ, **LOOPBACK_DRIVER, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "reasonrank.search", *common, "--ray", cluster_address, "--ray-actors", "2",
               "--output", str(tmp_path / "ray.txt"), "--explanations", str(tmp_path / "ray.jsonl")]
    with open(tmp_path / "driver.log", "w+") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            shards = tmp_path / ".ray.txt.ray"
            killed = None
            deadline = time.monotonic() + 600
            while killed is None:
                assert driver.poll() is None, "the run ended before a worker could be killed:\n" + log_text(log)
                assert time.monotonic() < deadline, "no actor ever got to work:\n" + log_text(log)
                started = any(path.stat().st_size for path in shards.glob(".shard-*.partial.jsonl"))
                busy = busy_actor_pids() if started else []
                if busy:
                    killed = busy[0]
                    os.kill(killed, signal.SIGKILL)  # mid-shard: some of its queries are on disk, some are not
                time.sleep(0.02)
            assert driver.wait(timeout=600) == 0, log_text(log)
        finally:
            if driver.poll() is None:
                driver.kill()
        output = log_text(log)
    assert "Ray actor lost during shard" in output and "every query reranked once" in output
    assert (tmp_path / "ray.txt").read_bytes() == (tmp_path / "single.txt").read_bytes()
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()
    records = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 12 * 10 and all(r["evidence"] for r in records)  # every explained document has evidence
    assert "+bm25" in (tmp_path / "ray.jsonl").read_text(encoding="utf-8")  # ...fused with the first stage's BM25
    assert not shards.exists()  # shard files are removed once the run is written


def log_text(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-4000:]


def test_ray_options_are_checked(capsys):
    assert search(["--ray", "--shard", "0/2", "--quiet"]) == EXIT_USER_ERROR
    assert "--ray shards the topics itself" in capsys.readouterr().err
    assert search(["--ray", "--ray-actors", "0", "--quiet"]) == EXIT_USER_ERROR
    assert "--ray-actors must be at least 1" in capsys.readouterr().err
