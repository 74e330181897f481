"""Running one reranking job over many machines (Ray)."""
