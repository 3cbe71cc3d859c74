"""Knowledge bases: ingestion, indexing, retrieval and context injection."""
