"""The reranking service (serve.app) and the OpenAI-compatible test server it ships (serve.openai_server)."""
