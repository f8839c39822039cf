"""The learned spaces: embeddings (text and image), their status, similarity and duplicates, identity
drift, and the maps (projection, layout, view) built on them."""
