"""Other toolkits driving reasonrank: PyTerrier transformers and the Anserini (Java) client."""
