"""Local embedding throughput (all-MiniLM-L6-v2 on CPU) and the dedupe guarantee.

Prints texts/s for the model alone (ONNX Runtime, the default) with the lowest cosine between its
vectors and the torch model's (sentence-transformers, what earlier versions stored), images/s for the offline pixel descriptor
(decode + 256-d descriptor of 512² PNG sketches), then embeds a 500-character
cast through the pipeline twice: the second pass must make zero model calls.
"""
from __future__ import annotations

import json
import random
import time

from _setup import bench_database

N_TEXTS = 2000
N_COMPARE = 500
CAST = 500
N_IMAGES = 100
WORDS = ("storm mage silver hair tinker spectacles assassin hooded knight archer fox spirit android chrome "
         "lighthouse keeper queen crown medic netrunner swordsman noodle stand mouse needle sword poet").split()


def main() -> None:
    bench_database("bench_embed")
    from core import characters
    from core.vectors import embedding_spaces, embeddings
    from core.characters import CharacterInput

    rng = random.Random(7)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) for _ in range(N_TEXTS)]
    emb = embedding_spaces.get_embedder("text-local")
    t0 = time.perf_counter()
    emb.embed(texts[:32])
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb.embed(texts)
    rate = N_TEXTS / (time.perf_counter() - t0)
    onnx_vecs = emb.embed(texts[:N_COMPARE])
    torch_emb = embedding_spaces.LocalTextEmbedder(backend="torch")
    torch_emb.embed(texts[:32])
    t0 = time.perf_counter()
    torch_vecs = torch_emb.embed(texts[:N_COMPARE])
    torch_rate = N_COMPARE / (time.perf_counter() - t0)
    min_cos = float((onnx_vecs * torch_vecs).sum(axis=1).min())

    from core.ai.sketch import draw_sketch
    from core.vectors.visual_descriptor import describe_bytes

    pngs = [draw_sketch(title=f"Bench {i}", subtitle="bench", seed=i, palette=[], pose="reference",
                        banner="BENCH") for i in range(N_IMAGES)]
    t0 = time.perf_counter()
    for png in pngs:
        describe_bytes(png)
    image_rate = N_IMAGES / (time.perf_counter() - t0)

    for i in range(CAST):
        characters.create_character(editor="bench", data=CharacterInput(
            name=f"Bench {i:04d}", traits=rng.sample(WORDS, 3), description=" ".join(rng.sample(WORDS, 8))))
    t0 = time.perf_counter()
    first = embeddings.embed_characters()
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = embeddings.embed_characters()
    second_s = time.perf_counter() - t0

    figures = {"texts_per_s": round(rate, 1), "backend": emb.backend, "torch_texts_per_s": round(torch_rate, 1),
               "min_cosine_vs_torch": round(min_cos, 6), "images_per_s": round(image_rate, 1), "model_load_and_first_batch_s": round(load_s, 2),
               "cast": CAST, "first_pass_s": round(first_s, 2), "first_pass_model_calls": first.model_calls,
               "second_pass_s": round(second_s, 3), "second_pass_model_calls": second.model_calls}
    print(f"all-MiniLM-L6-v2 on CPU ({emb.backend}): {figures['texts_per_s']} texts/s ({N_TEXTS} texts of 8-30 words); "
          f"load + first batch {figures['model_load_and_first_batch_s']} s")
    print(f"  torch (sentence-transformers): {figures['torch_texts_per_s']} texts/s; lowest cosine between the two "
          f"over {N_COMPARE} texts: {figures['min_cosine_vs_torch']}")
    print(f"pixel descriptor: {figures['images_per_s']} images/s ({N_IMAGES} sketches, decode included)")
    print(f"{CAST} characters through the pipeline: first pass {figures['first_pass_s']} s "
          f"({first.model_calls} model call(s)), unchanged second pass {figures['second_pass_s']} s "
          f"({second.model_calls} model calls)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
