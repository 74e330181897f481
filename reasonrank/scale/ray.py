"""Reranking on a Ray cluster: query shards as tasks on reranker actors, per-query results on disk, one merged run.

``python -m reasonrank.search ... --ray [ADDRESS]`` runs the first stage in the driver, cuts the requests into
shards of ``--batch-size`` queries (in topic order) and hands them to ``--ray-actors`` actors. Each actor loads the
reranker once and, for every shard it is given, appends each finished query to the shard's own file (one JSON line,
fsynced: the checkpoint format of :mod:`reasonrank.io.checkpoints`). The driver reads the shard files back in topic
order, and the caller writes the run and explanations exactly as a single process does, so the files are byte
identical to the single-process run's (for rerankers whose scores do not depend on which queries share a step).

Failures: when an actor (or the worker process or node under it) dies, Ray fails its task with an actor error; the
driver starts a replacement actor and gives it the same shard. The shard file keeps every query the dead actor
finished (a line cut short by the kill is dropped on reading), so the replacement redoes only the rest: no query is
lost and none is written twice. A reranker that raises fails the run with its error (that is a bug or a bad input,
which a retry would only repeat). The shard files live beside the output under a name carrying a hash of the
settings, so re-running the same command after a driver crash resumes from them; they are removed at the end.

Placement: an actor asks Ray for ``--ray-cpus-per-actor`` CPUs (default 1) and ``--ray-gpus-per-actor`` GPUs
(default 0). For vLLM tensor parallelism inside one actor, give it as many GPUs as ``tensor_parallel_size``
(data parallelism is then the number of actors); docs/scale-out.md has the recipes.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from reasonrank.errors import UserError
from reasonrank.io.checkpoints import Checkpoint
from reasonrank.rerank.base import Reranker
from reasonrank.retrieval.base import TextScorer
from reasonrank.types import Query, Ranking, Request

log = logging.getLogger("reasonrank")

RerankerFactory = Callable[[], Reranker]
MAX_REPLACEMENTS_PER_SHARD = 3  # a shard that kills its actor every time (out of memory) must not loop forever


@dataclass(frozen=True, slots=True)
class RayPlan:
    """Where and how wide: ``address`` None starts a local Ray instance; ``actors`` None fills the cluster's CPUs."""

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    requests: tuple[Request, ...]


def define_ray_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (one job over a cluster)")
    group.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="rerank on Ray: a cluster address (HOST:PORT, 'auto', ray://...) or nothing for a local Ray instance",
    )
    group.add_argument("--ray-actors", type=int, help="reranker actors (default: as many as the cluster's CPUs allow)")
    group.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves (default 1)")
    group.add_argument(
        "--ray-gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves (vLLM: tensor_parallel_size)"
    )


def plan_from_args(args: argparse.Namespace) -> RayPlan | None:
    """The Ray plan the command line asks for, or None without ``--ray``."""
    if getattr(args, "ray", None) is None:
        return None
    if args.ray_actors is not None and args.ray_actors < 1:
        raise UserError(f"--ray-actors must be at least 1, got {args.ray_actors}")
    if args.ray_cpus_per_actor <= 0 or args.ray_gpus_per_actor < 0:
        raise UserError("--ray-cpus-per-actor must be positive and --ray-gpus-per-actor 0 or more")
    if args.shard:
        raise UserError("--ray shards the topics itself: drop --shard")
    address = None if args.ray == "local" else args.ray
    return RayPlan(address, args.ray_actors, args.ray_cpus_per_actor, args.ray_gpus_per_actor)


def shard_checkpoint(folder: Path, index: int, settings: Mapping[str, object]) -> Checkpoint:
    """The durable file of shard ``index``: one line per finished query, as a single-process checkpoint keeps them."""
    return Checkpoint(folder / f"shard-{index:05d}", settings)


class RerankerActor:
    """Holds one reranker for its whole life and reranks whole shards with it (one task at a time)."""

    def __init__(self, make_reranker: RerankerFactory, folder: str, settings: Mapping[str, object]) -> None:
        self.reranker = make_reranker()
        self.folder = Path(folder)
        self.settings = dict(settings)

    def pid(self) -> int:
        return os.getpid()

    def rerank_shard(self, shard: Shard, step: int) -> int:
        """Rerank the queries of ``shard`` not yet in its file, ``step`` at a time; returns how many it reranked."""
        checkpoint = shard_checkpoint(self.folder, shard.index, self.settings)
        done = checkpoint.load({r.query.qid: r.query for r in shard.requests})
        pending = [r for r in shard.requests if r.query.qid not in done]
        for start in range(0, len(pending), step):
            checkpoint.append(self.reranker.rerank_many(pending[start : start + step]))
        return len(pending)


def make_shards(requests: Sequence[Request], size: int) -> list[Shard]:
    if size < 1:
        raise UserError(f"shard size must be at least 1, got {size}")
    starts = range(0, len(requests), size)
    return [Shard(number, tuple(requests[start : start + size])) for number, start in enumerate(starts)]


def _connect(plan: RayPlan) -> Any:
    try:
        import ray
    except ImportError as error:
        raise UserError("--ray needs Ray: pip install 'reasonrank[ray]'") from error
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=plan.address, namespace="reasonrank", log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as error:
        message = f"cannot reach the Ray cluster at {plan.address}: {error}; start one with ray start --head"
        raise UserError(message) from None
    return ray


def rerank_on_ray(
    requests: Sequence[Request],
    make_reranker: RerankerFactory,
    folder: Path,
    settings: Mapping[str, object],
    plan: RayPlan,
    step: int,
    progress: bool = True,
    name: str = "reranker",
) -> list[Ranking]:
    """Rankings for ``requests``, in their order, computed by actors of ``make_reranker`` on the Ray cluster.

    ``folder`` holds the shard files (kept after a failure, so the same call resumes); ``settings`` go into their
    names as in a checkpoint; ``step`` is the number of queries per shard and per reranking call.
    """
    ray = _connect(plan)
    from ray.exceptions import RayActorError

    folder.mkdir(parents=True, exist_ok=True)
    shards = make_shards(requests, step)
    queries = {r.query.qid: r.query for r in requests}
    finished = {s.index for s in shards if _complete(folder, s, settings, queries)}
    todo = deque(s for s in shards if s.index not in finished)
    available = int(ray.cluster_resources().get("CPU", 1) // max(plan.cpus_per_actor, 1e-9))
    count = max(1, min(plan.actors or max(1, available), len(todo) or 1))
    actor_class = ray.remote(num_cpus=plan.cpus_per_actor, num_gpus=plan.gpus_per_actor)(RerankerActor)

    def start_actors(number: int) -> list[Any]:
        actors = [actor_class.remote(make_reranker, str(folder), dict(settings)) for _ in range(number)]
        try:  # wait for the models to load, so that a reranker that cannot load fails the run at once
            ray.get([actor.pid.remote() for actor in actors])
        except RayActorError as error:
            for actor in actors:
                ray.kill(actor, no_restart=True)
            raise UserError(f"the reranker did not start on a Ray worker: {_last_line(error)}") from None
        return actors

    idle = start_actors(count) if todo else []
    running: dict[Any, tuple[Any, Shard]] = {}
    replaced: dict[int, int] = {}
    done_queries = sum(len(s.requests) for s in shards if s.index in finished)
    with tqdm(total=len(requests), initial=done_queries, desc=f"reranking on Ray ({name})", unit="query",
              disable=not progress) as bar:
        try:
            while todo or running:
                while idle and todo:
                    actor, shard = idle.pop(), todo.popleft()
                    running[actor.rerank_shard.remote(shard, step)] = (actor, shard)
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, shard = running.pop(ready[0])
                try:
                    ray.get(ready[0])
                except RayActorError as error:
                    ray.kill(actor, no_restart=True)
                    replaced[shard.index] = replaced.get(shard.index, 0) + 1
                    if replaced[shard.index] > MAX_REPLACEMENTS_PER_SHARD:
                        raise RuntimeError(f"shard {shard.index} lost its actor {replaced[shard.index]} times, "
                                           f"giving up: {_last_line(error)}") from error
                    log.warning("Ray actor lost during shard %d (%s): replaced; its unfinished queries are redone",
                                shard.index, _last_line(error)[:200])
                    todo.appendleft(shard)
                    idle.extend(start_actors(1))
                    continue
                idle.append(actor)
                bar.update(len(shard.requests))
        finally:
            for actor in [*idle, *(a for a, _ in running.values())]:
                ray.kill(actor, no_restart=True)
    rankings = _read_back(folder, shards, settings, queries)
    if replaced:
        log.warning("Ray: %d actor(s) replaced during the run; every query reranked once", sum(replaced.values()))
    return rankings


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _complete(folder: Path, shard: Shard, settings: Mapping[str, object], queries: Mapping[str, Query]) -> bool:
    done = shard_checkpoint(folder, shard.index, settings).load(queries)
    return all(r.query.qid in done for r in shard.requests)


def _read_back(
    folder: Path, shards: Sequence[Shard], settings: Mapping[str, object], queries: Mapping[str, Query]
) -> list[Ranking]:
    rankings: list[Ranking] = []
    for shard in shards:
        done = shard_checkpoint(folder, shard.index, settings).load(queries)
        missing = [r.query.qid for r in shard.requests if r.query.qid not in done]
        if missing:
            raise RuntimeError(f"shard {shard.index} lacks queries {', '.join(missing[:5])} after its task finished")
        rankings.extend(done[r.query.qid] for r in shard.requests)
    return rankings


def shard_folder(output: Path) -> Path:
    """Where a run writing ``output`` keeps its shard files."""
    return output.with_name(f".{output.name}.ray")


class RayReranker(Reranker):
    """What the search pipeline holds instead of a model with ``--ray``: it knows the configured reranker's depth
    and builds it only inside the actors. :meth:`rerank_many` reranks all requests it is given at once, on the
    cluster, in shards of ``settings.batch_size`` queries; :meth:`close` removes the shard files (by then the
    pipeline's own checkpoint holds the rankings)."""

    def __init__(self, settings: Any, output: Path, key: Mapping[str, object]) -> None:
        from dataclasses import replace

        self.settings = replace(settings, ray=None)  # what each actor builds: the same search, minus the cluster
        self.plan: RayPlan = settings.ray
        self.folder = shard_folder(output)
        # Shard boundaries depend on the batch size; where the cluster is does not change the results.
        self.key = {k: v for k, v in key.items() if k != "ray"} | {"batch_size": settings.batch_size}
        self.name = settings.cascade or settings.reranker  # until the actors report the loaded reranker's own name
        self.sentence_scorer: TextScorer | None = None
        if not settings.resume:
            remove_shard_files(self.folder)

    @property
    def text_depth(self) -> int | None:
        from reasonrank.rerank.cascade import parse_cascade

        if self.settings.cascade:
            return max(depth for _, depth in parse_cascade(self.settings.cascade))
        return self.settings.rerank_depth

    def explained_with(self, sentence_scorer: TextScorer | None) -> RayReranker:
        """This reranker with the evidence step in its actors: ``sentence_scorer`` (the first stage's, for fusions
        with it) travels to them by value, e.g. a BM25 scorer as its index path and parameters."""
        self.sentence_scorer = sentence_scorer
        return self

    def rerank_request(self, request: Request) -> Ranking:
        return self.rerank_many([request])[0]

    def rerank_many(self, requests: Sequence[Request]) -> list[Ranking]:
        from functools import partial

        from reasonrank.pipeline import build_explained_reranker

        rankings = rerank_on_ray(
            requests, partial(build_explained_reranker, self.settings, self.sentence_scorer), self.folder, self.key,
            self.plan, self.settings.batch_size, self.settings.progress, self.name,
        )
        if rankings:
            self.name = rankings[0].model
        return rankings

    def close(self) -> None:
        remove_shard_files(self.folder)


def ray_reranker(settings: Any, output: Path, key: Mapping[str, object]) -> RayReranker | None:
    """The stand-in for the configured reranker, or None when the search reranks nothing."""
    if not settings.cascade and settings.reranker.lower() == "none":
        return None
    return RayReranker(settings, output, key)


def remove_shard_files(folder: Path) -> None:
    """Drop the shard files once the run and explanations are written."""
    for path in folder.glob(".shard-*.partial.jsonl"):
        path.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
