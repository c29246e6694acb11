"""Knowledge base: loaders, chunking, retrieval."""
