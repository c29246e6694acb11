"""The setup checks behind `bot doctor` and `/readyz?verbose=1`: Redis, the database, each
platform app's token and callback keys, the public URL, the model endpoints (tool calling,
vision) and the embedding dimension, each with what to do in Chinese and English."""
