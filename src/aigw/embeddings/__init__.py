"""The embeddings capability: text in, vectors out, on the configured embedding engine."""
