"""Configuration from the environment, validated once at start-up.

Names follow label-studio-ml-backend where they exist (``LABEL_STUDIO_URL``,
``LABEL_STUDIO_API_KEY``, ``MODEL_DIR``, ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``); smartsize's
own knobs start with ``SMARTSIZE_``. ``Settings.describe()`` lists them all (README mirrors it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse


class ConfigError(ValueError):
    """Invalid configuration; the message names the variable and what is wrong."""


def _parse_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and value > high
    ):
        bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"{name}={raw!r} must be in {bounds}")
    return value


def parse_int_env(env: Mapping[str, str], name: str, default: int | None, low: int = 0):
    """``env[name]`` as an int >= ``low`` (``default`` when unset or empty)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} must be >= {low}")
    return value


def parse_class_weights(raw: str, name: str = "SMARTSIZE_CRITICALITY") -> dict[str, float]:
    """``"Defect=3, Scratch=2"`` -> ``{"Defect": 3.0, "Scratch": 2.0}`` (class names as in the
    label config; unlisted classes weigh 1)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        label, sep, value = part.rpartition("=")
        if not sep or not label.strip():
            raise ConfigError(f"{name}: expected 'Class=weight' items, got {part!r}")
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"{name}: weight of {label.strip()!r} is not a number") from None
        if weight < 0:
            raise ConfigError(f"{name}: weight of {label.strip()!r} must be >= 0")
        out[label.strip()] = weight
    return out


def _parse_priority_weights(raw: str) -> dict[str, float]:
    """``"uniqueness=0.2, rarity=0.2"`` -> weights over scoring's DEFAULT_WEIGHTS."""
    from scoring.priority import DEFAULT_WEIGHTS

    name = "SMARTSIZE_PRIORITY_WEIGHTS"
    weights = parse_class_weights(raw, name)
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ConfigError(f"{name}: unknown signal(s) {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
    return weights


def _check_url(name: str, url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={url!r} must be an http(s) URL such as http://localhost:8080")
    return url.rstrip("/")


@dataclass(frozen=True)
class Settings:
    label_studio_url: str | None = None
    label_studio_api_key: str | None = field(default=None, repr=False)
    model_dir: Path = Path("./model_dir")
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    redis_url: str | None = None
    embedder: dict = field(default_factory=dict)  # ImageEmbedder kwargs (SMARTSIZE_BACKBONE...)
    tau: float = 1e-4
    cost_per_label: float = 1.0
    criticality: dict[str, float] = field(default_factory=dict)
    priority_weights: dict[str, float] = field(default_factory=dict)  # over DEFAULT_WEIGHTS
    critical_classes: tuple[str, ...] = ()
    batch_size: int = 50
    diversity: float = 0.1
    min_new_annotations: int = 1
    max_escalations: int = 100
    allowed_hosts: tuple[str, ...] = ()
    max_image_bytes: int = 20 * 1024 * 1024
    keep_versions: int = 2
    # Read by ls_backend.head at fit time; parsed here too so a bad value stops `serve` at start.
    blas_threads: int = 1
    ambiguous_margin: float = 0.1
    contested: float = 0.5
    model_disagreement: float = 0.9
    critical_prob: float = 0.25

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("LABEL_STUDIO_URL") or None
        user = env.get("BASIC_AUTH_USER") or None
        password = env.get("BASIC_AUTH_PASS") or None
        if bool(user) != bool(password):
            raise ConfigError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
        redis_url = env.get("REDIS_URL") or None
        if redis_url and urlparse(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://"
            )
        from ls_backend.embedding import image_embedder_kwargs_from_env

        try:
            embedder = image_embedder_kwargs_from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        critical = tuple(
            c.strip() for c in env.get("SMARTSIZE_CRITICAL_CLASSES", "").split(",") if c.strip()
        )
        hosts = tuple(
            h.strip().lower()
            for h in env.get("SMARTSIZE_ALLOWED_HOSTS", "").split(",")
            if h.strip()
        )
        return cls(
            label_studio_url=_check_url("LABEL_STUDIO_URL", url) if url else None,
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY") or None,
            model_dir=Path(env.get("MODEL_DIR") or "./model_dir"),
            basic_auth_user=user,
            basic_auth_pass=password,
            redis_url=redis_url,
            embedder=embedder,
            tau=_parse_float(env, "SMARTSIZE_TAU", 1e-4, low=0, low_open=True),
            cost_per_label=_parse_float(env, "SMARTSIZE_COST_PER_LABEL", 1.0, low=0, low_open=True),
            criticality=parse_class_weights(env.get("SMARTSIZE_CRITICALITY", "")),
            priority_weights=_parse_priority_weights(env.get("SMARTSIZE_PRIORITY_WEIGHTS", "")),
            critical_classes=critical,
            batch_size=parse_int_env(env, "SMARTSIZE_BATCH_SIZE", 50, low=1),
            diversity=_parse_float(env, "SMARTSIZE_DIVERSITY", 0.1, low=0, high=1),
            min_new_annotations=parse_int_env(env, "SMARTSIZE_MIN_NEW_ANNOTATIONS", 1, low=1),
            max_escalations=parse_int_env(env, "SMARTSIZE_MAX_ESCALATIONS", 100, low=0),
            allowed_hosts=hosts,
            max_image_bytes=parse_int_env(env, "SMARTSIZE_MAX_IMAGE_BYTES", 20 * 1024 * 1024, 1024),
            keep_versions=parse_int_env(env, "SMARTSIZE_KEEP_VERSIONS", 2, low=1),
            blas_threads=parse_int_env(env, "SMARTSIZE_BLAS_THREADS", 1, low=1),
            ambiguous_margin=_parse_float(env, "SMARTSIZE_AMBIGUOUS_MARGIN", 0.1, 0, 1),
            contested=_parse_float(env, "SMARTSIZE_CONTESTED", 0.5, 0, 1),
            model_disagreement=_parse_float(env, "SMARTSIZE_MODEL_DISAGREEMENT", 0.9, 0, 1),
            critical_prob=_parse_float(env, "SMARTSIZE_CRITICAL_PROB", 0.25, 0, 1),
        )

    def require_label_studio(self) -> None:
        """The worker and the CLI need to reach Label Studio; the HTTP app alone does not."""
        missing = [
            n
            for n, v in (
                ("LABEL_STUDIO_URL", self.label_studio_url),
                ("LABEL_STUDIO_API_KEY", self.label_studio_api_key),
            )
            if not v
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} must be set: smartsize reads tasks and writes "
                "priorities through Label Studio's API (a personal access token or a legacy token)"
            )

    def public(self) -> dict:
        """Settings safe to show (status page, logs): secrets are replaced by '***'."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("label_studio_api_key", "basic_auth_pass"):
                value = "***" if value else None
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        if self.redis_url:
            parsed = urlparse(self.redis_url)
            if parsed.password:
                out["redis_url"] = self.redis_url.replace(parsed.password, "***")
        return out
