"""Image spaces on real photographs: retrieval of other views, drift separation, duplicates, speed.

The photographs ship inside packages (scikit-image's `data` folder and
scikit-learn's sample images), so this runs offline. Each subject gets six
views: the original, a crop rescaled back, a mirror image, a small rotation,
a colour and brightness shift, and the photo shrunk onto another background.
Every view is written as a JPEG and embedded from the file (decoding
included). For every image space it prints recall@1 and mean average
precision of "find the other views of the same subject", the cosine distance
between views of one subject vs. different subjects and the threshold that
separates them best (the off-model drift threshold), the similarity of a
near-identical copy (the duplicate threshold), images/s and model load time.
Ends with one JSON line.
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "retina.jpg",
                  "hubble_deep_field.jpg", "motorcycle_left.png", "coins.png", "moon.png", "ihc.png", "brick.png",
                  "grass.png", "gravel.png")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
VIEWS = ("original", "crop", "flip", "rotate", "colour", "background")
SPEED_PASSES = 3


def _package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def photographs() -> dict[str, Image.Image]:
    """The real photographs shipped in the wheels, as RGB (greyscale ones converted)."""
    out = {}
    for folder, names in ((_package_dir("skimage") / "data", SKIMAGE_PHOTOS),
                          (_package_dir("sklearn") / "datasets" / "images", SKLEARN_PHOTOS)):
        for n in names:
            with Image.open(folder / n) as img:
                out[n.rsplit(".", 1)[0]] = img.convert("RGB")
    return out


def views(img: Image.Image, rng: random.Random) -> list[Image.Image]:
    w, h = img.size
    f = rng.uniform(0.7, 0.85)
    cw, ch = int(w * f), int(h * f)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
    rotate = img.rotate(rng.choice((-1, 1)) * rng.uniform(6, 12), resample=Image.Resampling.BICUBIC,
                        fillcolor=(128, 128, 128))
    colour = ImageEnhance.Brightness(ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))).enhance(
        rng.uniform(0.7, 1.3))
    hue = np.asarray(colour.convert("HSV")).copy()
    hue[..., 0] = (hue[..., 0].astype(int) + rng.randint(8, 20)) % 256
    colour = Image.fromarray(hue, "HSV").convert("RGB")
    canvas = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
    noise = np.asarray(canvas, dtype=np.int16) + np.random.default_rng(rng.randint(0, 1 << 30)).integers(
        -40, 40, (h, w, 3))
    canvas = Image.fromarray(noise.clip(0, 255).astype(np.uint8))
    small = img.resize((int(w * 0.65), int(h * 0.65)), Image.Resampling.BICUBIC)
    canvas.paste(small, (rng.randint(0, w - small.width), rng.randint(0, h - small.height)))
    return [img, crop, ImageOps.mirror(img), rotate, colour, canvas]


def write_set(folder: Path) -> tuple[list[Path], list[int], list[Path]]:
    """Views as JPEG files, their subject labels, and one near-identical copy per subject (half size, q70)."""
    rng = random.Random(14)
    paths, labels, copies = [], [], []
    for s, (name, img) in enumerate(sorted(photographs().items())):
        for v, view in zip(VIEWS, views(img, rng)):
            p = folder / f"{name}-{v}.jpg"
            view.save(p, quality=90)
            paths.append(p)
            labels.append(s)
        c = folder / f"{name}-copy.jpg"
        img.resize((img.width // 2, img.height // 2), Image.Resampling.BILINEAR).save(c, quality=70)
        copies.append(c)
    return paths, labels, copies


def retrieval(vecs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """recall@1 and mAP of "the other views of this subject", every image a query."""
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    hits, aps = 0, []
    for i in range(len(labels)):
        order = np.argsort(-sims[i])[:-1]  # itself (−inf) last, dropped
        rel = labels[order] == labels[i]
        hits += bool(rel[0])
        ranks = np.nonzero(rel)[0] + 1
        aps.append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return hits / len(labels), float(np.mean(aps))


def separation(vecs: np.ndarray, labels: np.ndarray) -> dict:
    """Cosine distances between views of one subject vs. different subjects, and the best threshold."""
    dist = 1.0 - vecs @ vecs.T
    iu = np.triu_indices(len(labels), 1)
    same = labels[iu[0]] == labels[iu[1]]
    d_same, d_diff = dist[iu][same], dist[iu][~same]
    best = (0.0, 0.0)
    for t in np.unique(np.round(dist[iu], 3)):
        acc = 0.5 * (np.mean(d_same <= t) + np.mean(d_diff > t))  # balanced: far more different pairs
        if acc > best[0]:
            best = (float(acc), float(t))
    return {"same_median": float(np.median(d_same)), "same_p90": float(np.percentile(d_same, 90)),
            "diff_median": float(np.median(d_diff)), "diff_p10": float(np.percentile(d_diff, 10)),
            "best_threshold": best[1], "balanced_accuracy": best[0]}


def anchor_separation(vecs: np.ndarray, labels: np.ndarray, paths: list[Path]) -> dict:
    """Drift as the app computes it: the mean of three views ("references": original, crop, flip) is the
    anchor; the other views' distances to their own anchor vs. to other subjects' anchors."""
    ref_views = ("-original", "-crop", "-flip")
    is_ref = np.array([p.stem.endswith(ref_views) for p in paths])
    subjects = sorted(set(labels.tolist()))
    anchors = np.stack([vecs[(labels == s) & is_ref].mean(axis=0) for s in subjects])
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    dist = 1.0 - vecs[~is_ref] @ anchors.T
    own = np.asarray(subjects)[None, :] == labels[~is_ref][:, None]
    d_same, d_diff = dist[own], dist[~own]
    best = (0.0, 0.0)
    for t in np.unique(np.round(dist, 3)):
        acc = 0.5 * (np.mean(d_same <= t) + np.mean(d_diff > t))
        if acc > best[0]:
            best = (float(acc), float(t))
    return {"drift_same_max": float(d_same.max()), "drift_diff_min": float(d_diff.min()),
            "drift_threshold": best[1], "drift_accuracy": best[0]}


def measure(space: str, paths, labels, copies) -> dict:
    from core.vectors.embedding_spaces import get_embedder

    emb = get_embedder(space)
    t0 = time.perf_counter()
    if hasattr(emb, "load"):
        emb.load()
    load_s = time.perf_counter() - t0
    emb.embed_images(paths[:4])  # warm-up batch (first-call allocations)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(SPEED_PASSES):
        vecs = emb.embed_images(paths)
    n = SPEED_PASSES * len(paths)
    rate, cpu_per_image = n / (time.perf_counter() - t0), (time.process_time() - c0) / n
    r1, m_ap = retrieval(vecs, labels)
    originals = vecs[[i for i, p in enumerate(paths) if p.stem.endswith("-original")]]
    copy_sims = np.sum(originals * emb.embed_images(copies), axis=1)
    return {"recall_at_1": r1, "map": m_ap, "images_per_s": rate, "load_s": load_s, "cpu_s_per_image": cpu_per_image,
            "copy_similarity_min": float(copy_sims.min()), "copy_similarity_median": float(np.median(copy_sims)),
            **separation(vecs, labels), **anchor_separation(vecs, labels, paths)}


def main() -> None:
    from core.vectors.embedding_spaces import IMAGE_LOCAL
    from core.vectors.image_embedders import IMAGE_CLIP, IMAGE_LEARNED, clip_available, set_torch_threads

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threads = set_torch_threads()
    folder = Path(tempfile.mkdtemp(prefix="bench-visual-"))
    paths, labels, copies = write_set(folder)
    labels = np.asarray(labels)
    spaces = [IMAGE_LEARNED, IMAGE_LOCAL] + ([IMAGE_CLIP] if clip_available() else [])
    print(f"{len(set(labels.tolist()))} photographed subjects × {len(VIEWS)} views = {len(paths)} JPEG files; "
          f"torch threads {threads}")
    res = {}
    for space in spaces:
        r = res[space] = measure(space, paths, labels, copies)
        print(f"{space:14s} recall@1 {r['recall_at_1']:.3f}  mAP {r['map']:.3f}  {r['images_per_s']:.1f} images/s "
              f"(decode included; {r['cpu_s_per_image'] * 1000:.0f} CPU-ms per image)  load {r['load_s']:.2f} s")
        print(f"{'':14s} distance same subject: median {r['same_median']:.3f}, p90 {r['same_p90']:.3f}; "
              f"different: median {r['diff_median']:.3f}, p10 {r['diff_p10']:.3f}; best threshold "
              f"{r['best_threshold']:.3f} (balanced accuracy {r['balanced_accuracy']:.3f}); "
              f"near-identical copy similarity: min {r['copy_similarity_min']:.3f}, median "
              f"{r['copy_similarity_median']:.3f}")
        print(f"{'':14s} drift (distance to the mean of 3 reference views): same subject ≤ {r['drift_same_max']:.3f}, "
              f"other subjects ≥ {r['drift_diff_min']:.3f}; off-model threshold {r['drift_threshold']:.3f} "
              f"(balanced accuracy {r['drift_accuracy']:.3f})")
    learned, pixel = res[IMAGE_LEARNED], res[IMAGE_LOCAL]
    out = {"recall_at_1_learned": round(learned["recall_at_1"], 3), "recall_at_1_pixel": round(pixel["recall_at_1"], 3),
           "map_learned": round(learned["map"], 3), "map_pixel": round(pixel["map"], 3),
           "images_per_s_learned": round(learned["images_per_s"], 1), "n_images": len(paths),
           "model_load_s_learned": round(learned["load_s"], 2),
           "cpu_ms_per_image_learned": round(learned["cpu_s_per_image"] * 1000, 1),
           "view_distance_threshold_learned": round(learned["best_threshold"], 3),
           "drift_threshold_learned": round(learned["drift_threshold"], 3),
           "drift_accuracy_learned": round(learned["drift_accuracy"], 3),
           "drift_threshold_pixel": round(pixel["drift_threshold"], 3),
           "copy_similarity_min_learned": round(learned["copy_similarity_min"], 3)}
    if IMAGE_CLIP in res:
        out.update(recall_at_1_clip=round(res[IMAGE_CLIP]["recall_at_1"], 3), map_clip=round(res[IMAGE_CLIP]["map"], 3))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
