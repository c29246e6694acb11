"""The knowledge base: loaders, chunking, storage, keyword and dense retrieval."""

import os

# One query's cosine search is a memory-bound matrix-vector product: BLAS threads only
# fight the worker's own threads for the cores (3,918 x 256 rows on this loaded 2-core
# machine: 15 ms with OpenBLAS's default threads, 0.3 ms with one). Set before numpy loads;
# an explicit OPENBLAS_NUM_THREADS wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
