"""Search over the chunks: BM25, dense vectors, their fusion and reranking."""
