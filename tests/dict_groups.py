"""The distillation groups built the way they were before the Arrow tables: every input read into Python dicts.

The reference :func:`reasonrank.train.groups.build_groups` is checked against (tests/train/test_train_tables.py:
the same groups in the same order) and that benchmarks/training_data_memory.py compares its memory with.
"""

from __future__ import annotations

import random
from typing import Any

from reasonrank.io.runs import read_run
from reasonrank.train.data import load_corpus, load_qrels, read_jsonl, topics_by_id
from reasonrank.train.groups import Group
from reasonrank.train.losses import TEACHER_LOSSES


def dict_groups(config: Any) -> list[Group]:
    topics = topics_by_id(config.topics)
    qrels = load_qrels(config.qrels)
    run = read_run(config.candidates)
    candidates = {q: sorted(docs, key=lambda d: -docs[d])[: config.negatives_depth] for q, docs in run.items()}
    teacher: dict[str, dict[str, float]] | None = None
    if config.teacher_scores and (config.alpha > 0 or config.loss in TEACHER_LOSSES):
        teacher = {}
        for record in read_jsonl(config.teacher_scores):
            teacher.setdefault(str(record["qid"]), {})[str(record["docid"])] = float(record["score"])
    qids = [q for q in topics if q in qrels and q in candidates][: config.max_queries]
    plan = []
    for qid in qids:
        positives = [d for d, g in qrels[qid].items() if g >= config.min_positive_grade]
        negatives = [d for d in candidates[qid] if qrels[qid].get(d, 0) < config.min_positive_grade]
        if teacher is not None:
            known = teacher.get(qid, {})
            positives = [p for p in positives if p in known]
            negatives = [n for n in negatives if n in known]
        if len(negatives) >= config.group_size - 1:
            plan.extend((qid, p, negatives) for p in positives)
    documents = load_corpus(config.corpus, {d for _, p, negs in plan for d in (p, *negs)})
    rng = random.Random(config.seed)
    groups = []
    for _ in range(config.epochs):
        for qid, positive, negatives in rng.sample(plan, len(plan)):
            docs = [positive, *rng.sample(negatives, config.group_size - 1)]
            groups.append(Group(
                topics[qid].text, tuple(documents[d] for d in docs), (1.0,) + (0.0,) * (len(docs) - 1),
                tuple(teacher[qid][d] for d in docs) if teacher is not None else None,
            ))
    return groups
