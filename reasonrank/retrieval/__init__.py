"""First stages: topics in, candidates out (BM25 over Lucene, dense over faiss), and the Lucene index they read."""
