"""Configuration from the environment and `.env` (pydantic-settings).

Secrets are `SecretStr` so that printing or logging the settings object never
shows them; `describe()` is what the UI may display.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=PROJECT_ROOT / ".env", env_file_encoding="utf-8", extra="ignore")

    database_url: SecretStr | None = Field(default=None, description="Postgres URL; unset = embedded pgserver")
    pg_data_dir: Path = Field(default=PROJECT_ROOT / "data" / "pg")
    media_root: Path = Field(default=PROJECT_ROOT / "media")

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None

    # Upload / fetch limits (safety rules in DESIGN.md)
    max_upload_bytes: int = 15 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    url_fetch_timeout_s: float = 10.0
    url_fetch_max_bytes: int = 15 * 1024 * 1024
    allow_private_urls: bool = False

    # AI provider: "auto" = openai when a key is configured, else offline
    ai_provider: str = "auto"
    openai_text_model: str = "gpt-4o-mini"
    openai_vision_model: str = "gpt-4o-mini"
    openai_image_model: str = "gpt-image-1"
    openai_image_size: str = "1024x1024"
    openai_image_quality: str = "medium"
    openai_timeout_s: float = 120.0
    openai_max_retries: int = 3
    max_retry_after_s: float = 60.0
    offline_latency_s: float = Field(default=0.0, description="Artificial delay per offline call (benchmarks)")

    # Background generation
    generation_concurrency: int = Field(default=10, description="Slots a worker runs at once (lower for small API tiers)")
    stalled_after_s: float = Field(default=30.0, description="A worker silent this long is considered dead")
    recovery_interval_s: float = 15.0
    worker_stop_timeout_s: float = Field(default=20.0, description="SIGTERM: running slots get this long (capped at "
                                         "0.8 x STALLED_AFTER_S), then they are abandoned to recovery")
    slot_timeout_s: float | None = Field(default=None, description="A slot generating longer than this is failed by "
                                         "recovery; unset = derived from the OpenAI timeout and retries")
    embedded_worker: bool = Field(default=True, description="make run starts a worker next to the app")

    thumbnail_size: int = 256

    # Template renders (core/ai/template_runner.py): each runs in a child process under these limits
    template_render_timeout_s: float = Field(default=5.0, description="Wall-clock limit of one template render")
    template_render_memory_mb: int = Field(default=256, description="Memory a render child may add")
    template_render_processes: int = Field(default=2, description="Render children per process (reused)")

    # Embeddings: the text space (text-local = offline MiniLM; text-openai needs a key) and the image space.
    embedding_text_space: str = Field(default="text-local", description="text-local | text-openai")
    embedding_image_space: str = Field(default="image-learned", description="image-learned (EfficientNet-Lite0, "
                                       "offline) | image-local (pixel descriptor) | image-clip (needs IMAGE_CLIP_MODEL)")
    image_clip_model: str = Field(default="", description="CLIP-class model folder or name; empty = no image-clip")
    embedding_torch_threads: int = Field(default=0, description="torch threads for local models; 0 = every core")
    off_model_drift: float | None = Field(default=None, description="drift above this flags a variation off-model; "
                                          "unset = the value calibrated by bench/visual.py for the image space")
    map_tsne_max_points: int = Field(default=1_500, description="Maps of up to this many points use t-SNE (no JIT "
                                     "compile on a fresh machine); bigger ones UMAP")
    embedding_model_cache: Path = Field(default=PROJECT_ROOT / "data" / "models",
                                        description="Where the ONNX export of the local text model is kept")
    embedding_warmup: bool = Field(default=True, description="Load the text model in the web process at start "
                                   "(a save's look-alike check and the first search then don't wait for it)")

    # Team access (core/team): sign-in is on when .streamlit/secrets.toml has an [auth] section
    streamlit_secrets_file: Path = Field(default=PROJECT_ROOT / ".streamlit" / "secrets.toml",
                                         description="Where Streamlit's [auth] (OIDC) settings live")
    admin_emails: str = Field(default="", description="Comma-separated e-mails that are admins on first sign-in")
    default_role: str = Field(default="viewer", description="Role of a signed-in person who is not a member yet: "
                              "viewer | reviewer | editor | admin | none (refused until an admin adds them)")
    local_role: str = Field(default="admin", description="Role of the single local user when sign-in is off")
    server_address: str = Field(default="127.0.0.1", description="Address the web server binds (serve --address "
                                "wins); anything but a loopback address needs sign-in or ALLOW_UNAUTHENTICATED_REMOTE")
    allow_unauthenticated_remote: bool = Field(default=False, description="Serve a non-local address without "
                                               "sign-in (the operator accepts that anyone who reaches it is admin)")
    review_claim_ttl_s: float = Field(default=300.0, description="How long a review claim holds an image for one "
                                      "reviewer without activity")
    review_votes_required: int = Field(default=1, description="Independent decisions an image needs (2 = double "
                                       "review; disagreements go to adjudication)")

    @property
    def admin_identities(self) -> frozenset[str]:
        # the same key as core.team.access.identity_key: trimmed, lower-cased, NFC
        return frozenset(unicodedata.normalize("NFC", e.strip().lower()) for e in self.admin_emails.split(",") if e.strip())

    @property
    def auth_enabled(self) -> bool:
        """Sign-in is configured: Streamlit's secrets file has an [auth] section (read here without Streamlit)."""
        import tomllib

        path = self.streamlit_secrets_file
        try:
            with open(path, "rb") as fh:
                return isinstance(tomllib.load(fh).get("auth"), dict)
        except FileNotFoundError:
            return False
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise RuntimeError(f"{path} cannot be read ({err}); fix it or remove it to run without sign-in") from err

    @property
    def provider_name(self) -> str:
        if self.ai_provider in ("offline", "openai"):
            return self.ai_provider
        return "openai" if self.openai_api_key and self.openai_api_key.get_secret_value() else "offline"

    @property
    def worker_stop_bound_s(self) -> float:
        """How long a stopping worker waits for running slots: below the stall window (so recovery,
        not a second copy, picks them up) and below the launcher's kill timeout."""
        return max(0.5, min(self.worker_stop_timeout_s, 0.8 * self.stalled_after_s))

    @property
    def slot_timeout_bound_s(self) -> float:
        """The longest a healthy slot can take: every provider attempt timing out plus the retry waits."""
        if self.slot_timeout_s is not None:
            return self.slot_timeout_s
        retries = max(0, self.openai_max_retries)
        return self.openai_timeout_s * (retries + 1) + self.max_retry_after_s * retries + 120.0

    def describe(self) -> dict[str, str]:
        """Non-secret view of the configuration for the UI."""
        return {
            "database": "configured DATABASE_URL" if self.database_url else f"embedded ({self.pg_data_dir})",
            "media_root": str(self.media_root),
            "ai provider": self.provider_name,
            "openai": "key configured" if self.openai_api_key and self.openai_api_key.get_secret_value() else "no key",
            "openai_base_url": self.openai_base_url or "default",
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Tests change the environment and need a fresh Settings."""
    get_settings.cache_clear()
