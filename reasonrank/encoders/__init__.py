"""Encoder code shared by retrieval and rerank: model loading, tokenisation, length-sorted batching, pooling."""
