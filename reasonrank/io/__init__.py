"""Reading and writing what flows between stages: JSONL, corpora, topics and qrels, runs, explanations, checkpoints."""
