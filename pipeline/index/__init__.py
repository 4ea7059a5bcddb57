"""FAISS indexes keyed by item id, their snapshots and the Ray actor that holds them."""
