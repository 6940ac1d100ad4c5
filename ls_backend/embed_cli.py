"""``smartsize embed INPUT --out FILE.npy``: embed a folder of images or an ``.npz``.

Writes ``FILE.npy`` (float32, one row per image, in input order) and ``FILE.json`` beside it
(the model's cache id, the row order as file names or array indices, and any skipped files).
torch is imported only when the command runs, so ``smartsize --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ls_backend.state import atomic_write_bytes

#: Images decoded and embedded per step (bounds memory for big folders).
CHUNK = 256


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "embed",
        help="embed a folder of images or an .npz of images into an .npy of vectors",
        description=(
            "Embed images with the configured backbone. INPUT is a folder of images (all files "
            "below it, sorted by relative path; unreadable files are reported and skipped) or an "
            ".npz with an 'images' uint8 array (n, h, w) or (n, h, w, 3). Rows of the output "
            "follow the input order, which FILE.json records. Defaults come from SMARTSIZE_* "
            "environment variables."
        ),
    )
    p.add_argument("input", metavar="INPUT", help="folder of images, or .npz with 'images'")
    p.add_argument("--out", required=True, metavar="FILE.npy", help="output .npy file")
    p.add_argument("--backbone", help="timm model name (default tf_efficientnet_lite0)")
    p.add_argument(
        "--image-size", type=int, help="input size in pixels (default: the model's; ~96 for tiny)"
    )
    p.add_argument(
        "--weights",
        choices=["auto", "offline", "pretrained", "random"],
        help="where the weights come from (default auto)",
    )
    p.add_argument("--checkpoint", help="state dict file for the backbone")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_embed)
    return p


def _list_images(folder: Path) -> list[Path]:
    files = [
        f
        for f in folder.rglob("*")
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix())


def _read_image(path: Path) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()  # decode now, so truncated files fail here
        img = ImageOps.exif_transpose(img)
        return img.copy()


def _folder_chunks(
    files: list[Path], root: Path, skipped: list[dict[str, str]]
) -> Iterator[tuple[int, list[str], list[Any]]]:
    """Yield (files processed, names read, images read) per chunk; record unreadable files."""
    import warnings

    from PIL import Image

    for start in range(0, len(files), CHUNK):
        names: list[str] = []
        images: list[Any] = []
        part = files[start : start + CHUNK]
        for f in part:
            rel = f.relative_to(root).as_posix()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    images.append(_read_image(f))
                names.append(rel)
            except Exception as exc:  # any unreadable file: report, skip, carry on
                reason = f"{type(exc).__name__}: {exc}"
                skipped.append({"file": rel, "error": reason})
                print(f"smartsize embed: skipping {rel}: {reason}", file=sys.stderr)
        yield len(part), names, images


def _load_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" not in data.files:
                raise ValueError(f"{path}: no 'images' array (found: {', '.join(data.files)})")
            images = data["images"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: 'images' must be uint8, got {images.dtype}")
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3))):
        raise ValueError(f"{path}: 'images' must be (n, h, w) or (n, h, w, 3), got {images.shape}")
    return images


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())


def run_embed(args: argparse.Namespace) -> int:
    from ls_backend.embedding import EmbeddingError, ImageEmbedder

    src = Path(args.input).expanduser()
    out = Path(args.out).expanduser()
    if out.suffix != ".npy":
        raise ValueError(f"--out must end in .npy, got {out}")
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    if src.is_dir():
        files = _list_images(src)
        if not files:
            raise ValueError(f"{src}: no files to embed")
        total = len(files)
        array = None
    elif src.suffix == ".npz":
        array = _load_npz(src)
        files = []
        total = len(array)
    else:
        raise ValueError(f"{src}: INPUT must be a folder of images or an .npz file")

    try:
        embedder = ImageEmbedder.from_env(
            backbone=args.backbone,
            image_size=args.image_size,
            weights=args.weights,
            checkpoint=args.checkpoint,
            batch_size=args.batch_size,
        )
    except EmbeddingError as exc:  # no usable weights: one clear line, no traceback
        print(f"smartsize embed: error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    show = not args.no_progress and total > 0
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"embedding ({embedder.cache_id})", unit="img")

    skipped: list[dict[str, str]] = []
    names: list[str] = []
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        rows = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(total, embedder.dim)
        )
        n = 0
        if array is not None:
            for start in range(0, total, CHUNK):
                block = array[start : start + CHUNK]
                rows[start : start + len(block)] = embedder.embed(block, progress=False)
                n += len(block)
                if bar is not None:
                    bar.update(len(block))
            names = [str(i) for i in range(total)]
        else:
            for processed, chunk_names, images in _folder_chunks(files, src, skipped):
                if images:
                    rows[n : n + len(images)] = embedder.embed(images, progress=False)
                n += len(images)
                names.extend(chunk_names)
                if bar is not None:
                    bar.update(processed)
        if n == 0:
            raise ValueError(f"{src}: none of the {total} files could be read as an image")
        rows.flush()
        if n < total:  # some files were skipped: keep only the rows written
            del rows
            full = np.load(tmp, mmap_mode="r")
            trimmed = np.lib.format.open_memmap(
                str(tmp) + ".trim", mode="w+", dtype=np.float32, shape=(n, embedder.dim)
            )
            trimmed[:] = full[:n]
            trimmed.flush()
            del trimmed, full
            os.replace(str(tmp) + ".trim", tmp)
        else:
            del rows
        os.replace(tmp, out)
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".trim").unlink(missing_ok=True)

    meta = {
        "input": str(src),
        "kind": "folder" if array is None else "npz",
        "cache_id": embedder.cache_id,
        "backbone": embedder.backbone,
        "weights": embedder.weights_source,
        "image_size": embedder.image_size,
        "dim": embedder.dim,
        "n": n,
        "rows": names,
        "skipped": skipped,
    }
    meta_path = out.with_suffix(".json")
    _write_json_atomic(meta_path, meta)
    print(
        f"wrote {n} x {embedder.dim} embeddings to {out} (row order in {meta_path.name})"
        + (f"; skipped {len(skipped)} unreadable file(s)" if skipped else ""),
        file=sys.stderr,
    )
    return 0
