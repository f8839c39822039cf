"""Provider interface and the two providers: `offline` and `openai`.

Pages and jobs never call a provider directly: they go through core.ai.ai_engine,
which builds the prompt from the registry and records an ai_call row. The
openai provider retries 429 (honouring Retry-After), 5xx and timeouts with
backoff, and never retries a content-policy refusal.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import random
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from core.errors import WorkbenchError
from core.ai.pricing import Usage
from core.settings import Settings, get_settings
from core.ai.sketch import draw_sketch

log = logging.getLogger(__name__)
MAX_REFERENCE_IMAGES = 16


class ProviderError(WorkbenchError):
    """A provider call failed; `kind` says how (timeout, rate_limit, server, refused, bad_request, malformed)."""

    def __init__(self, message: str, *, kind: str, attempts: int = 1):
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts


class ContentRefused(ProviderError):
    """The provider's safety system refused the request; retrying would not help."""


@dataclass
class TextResult:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1


@dataclass
class ImageResult:
    data: bytes
    model: str
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1
    mime: str = "image/png"
    seed_used: bool = False  # OpenAI has no seed parameter; the offline renderer does


class Provider(Protocol):
    name: str

    def complete_json(self, *, prompt: str, task: str, context: dict[str, Any]) -> TextResult: ...

    def caption_image(self, *, prompt: str, image: bytes, mime: str, context: dict[str, Any]) -> TextResult: ...

    def generate_image(
        self, *, prompt: str, references: list[tuple[bytes, str]], context: dict[str, Any],
        before_attempt: Callable[[], None] | None = None,
    ) -> ImageResult: ...


# ---------------------------------------------------------------- offline
_SYLLABLES = ["ka", "ri", "mo", "sel", "an", "dra", "vin", "tho", "lu", "ne", "ska", "bel", "or", "isa", "ren", "ty",
              "mar", "quin", "el", "zo", "fa", "gri", "hal", "wen"]
_SURNAMES = ["Ashdown", "Brightwater", "Coldiron", "Duskmere", "Emberfall", "Frostwick", "Greywillow", "Hollowell",
             "Ironwood", "Juniper", "Kestrel", "Larkspur", "Moonvale", "Nightingale", "Oakheart", "Quillon"]


class OfflineProvider:
    """Deterministic and network-free: same inputs, same bytes."""

    name = "offline"
    text_model = "offline-text"
    image_model = "offline-sketch"

    def __init__(self, settings: Settings | None = None):
        self.latency = (settings or get_settings()).offline_latency_s

    def _wait(self) -> None:
        if self.latency > 0:
            time.sleep(self.latency)

    @staticmethod
    def _seed(*parts: Any) -> int:
        return zlib.crc32("\x1f".join(str(p) for p in parts).encode())

    def complete_json(self, *, prompt: str, task: str, context: dict[str, Any]) -> TextResult:
        self._wait()
        rng = random.Random(self._seed(task, prompt))
        if task == "character_name":
            taken = {n.lower() for n in context.get("existing_names", [])}
            names: list[str] = []
            while len(names) < int(context.get("count", 5)):
                first = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
                name = f"{first} {rng.choice(_SURNAMES)}"
                if name.lower() not in taken and name not in names:
                    names.append(name)
            return TextResult(json.dumps({"names": names}), self.text_model)
        return TextResult(json.dumps({"text": prompt[:200]}), self.text_model)

    def caption_image(self, *, prompt: str, image: bytes, mime: str, context: dict[str, Any]) -> TextResult:
        """Offline captions come from what we know: the editor's caption, the slot and the character."""
        self._wait()
        ch = context.get("character", {})
        slot = context.get("slot") or {}
        traits = ", ".join(ch.get("traits", [])[:4])
        basis = context.get("existing_caption") or (slot.get("fragment") if context.get("is_variation") else "")
        caption = f"{ch.get('name', 'Character')}" + (f" ({traits})" if traits else "") + (f": {basis}" if basis else "")
        alt = f"Image of {ch.get('name', 'a character')}" + (f", {slot.get('label', '').lower()}" if context.get("is_variation") else "")
        return TextResult(json.dumps({"caption": caption, "alt_text": alt}), self.text_model)

    def generate_image(self, *, prompt: str, references: list[tuple[bytes, str]], context: dict[str, Any],
                       before_attempt: Callable[[], None] | None = None) -> ImageResult:
        if before_attempt is not None:  # one attempt offline: the gate runs once
            before_attempt()
        self._wait()
        ch, slot, style = context.get("character", {}), context.get("slot", {}), context.get("style", {})
        seed = int(slot.get("seed", 0))
        png = draw_sketch(
            title=ch.get("name", "?"), subtitle=f"{slot.get('label', '')} · seed {seed}",
            seed=seed ^ self._seed(prompt), palette=style.get("palette") or None, pose=slot.get("pose", "reference"),
        )
        return ImageResult(png, self.image_model, Usage(images_out=1), seed_used=True)


# ---------------------------------------------------------------- openai
def _retry_after_s(response: Any) -> float | None:
    if response is None:
        return None
    headers = getattr(response, "headers", {}) or {}
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                log.info("unparseable %s header: %r", key, value)
    return None


def _usage_from(obj: Any) -> Usage:
    u = getattr(obj, "usage", None)
    if u is None:
        return Usage()
    tin = getattr(u, "prompt_tokens", None) or getattr(u, "input_tokens", None) or 0
    tout = getattr(u, "completion_tokens", None) or getattr(u, "output_tokens", None) or 0
    details = getattr(u, "input_tokens_details", None)
    img_in = getattr(details, "image_tokens", 0) or 0 if details is not None else 0
    return Usage(tokens_in=int(tin), tokens_out=int(tout), image_tokens_in=int(img_in))


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings | None = None):
        import openai

        self.settings = settings or get_settings()
        key = self.settings.openai_api_key.get_secret_value() if self.settings.openai_api_key else None
        self._openai = openai
        # Our own retry loop (max_retries=0) so attempts and waits are recorded and policy refusals never retried.
        self.client = openai.OpenAI(
            api_key=key or "missing", base_url=self.settings.openai_base_url, timeout=self.settings.openai_timeout_s,
            max_retries=0,
        )

    def call_with_retries(self, fn, *, what: str, before_attempt: Callable[[], None] | None = None):
        """Run one SDK call under our retry policy; returns (response, attempts).

        `before_attempt` runs before every attempt, retries included: a slot's fencing gate, so a worker
        paused during a retry wait does not pay again for a slot that was handed to another job."""
        oa = self._openai
        attempts = 0
        max_retries = max(0, self.settings.openai_max_retries)
        while True:
            attempts += 1
            wait: float | None = None
            if before_attempt is not None:
                before_attempt()
            try:
                return fn(), attempts
            except oa.RateLimitError as err:
                kind, msg = "rate_limit", f"rate limited (429): {err.message}"
                wait = _retry_after_s(err.response)
            except oa.APITimeoutError:
                kind, msg = "timeout", f"timed out after {self.settings.openai_timeout_s:g} s"
            except oa.InternalServerError as err:
                kind, msg = "server", f"server error ({err.status_code}): {err.message}"
                wait = _retry_after_s(err.response)
            except oa.APIConnectionError as err:
                kind, msg = "connection", f"connection failed: {err.message}"
            except oa.BadRequestError as err:
                code = (getattr(err, "code", None) or "").lower()
                text = str(err.message).lower()
                if code in {"content_policy_violation", "moderation_blocked"} or "safety system" in text or "content policy" in text:
                    raise ContentRefused(
                        f"The provider refused this {what} on content-policy grounds: {err.message}", kind="refused",
                        attempts=attempts,
                    ) from None
                raise ProviderError(f"The provider rejected the {what} request (400): {err.message}",
                                    kind="bad_request", attempts=attempts) from None
            except (oa.AuthenticationError, oa.PermissionDeniedError) as err:
                raise ProviderError(f"OpenAI refused the credentials ({err.status_code}); check OPENAI_API_KEY.",
                                    kind="auth", attempts=attempts) from None
            except oa.APIStatusError as err:
                raise ProviderError(f"The provider answered {err.status_code} for the {what}: {err.message}",
                                    kind="bad_request", attempts=attempts) from None
            except (oa.APIResponseValidationError, json.JSONDecodeError, ValueError) as err:
                raise ProviderError(f"The provider's response to the {what} was malformed: {err}",
                                    kind="malformed", attempts=attempts) from None
            if attempts > max_retries:
                raise ProviderError(f"The {what} failed after {attempts} attempt(s): {msg}", kind=kind, attempts=attempts)
            delay = wait if wait is not None else min(30.0, 0.5 * 2 ** (attempts - 1)) * (0.8 + 0.4 * random.random())
            delay = min(delay, self.settings.max_retry_after_s)
            log.warning("openai %s attempt %d failed (%s); retrying in %.2f s", what, attempts, msg, delay)
            time.sleep(delay)

    def complete_json(self, *, prompt: str, task: str, context: dict[str, Any]) -> TextResult:
        model = self.settings.openai_text_model
        resp, attempts = self.call_with_retries(
            lambda: self.client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], response_format={"type": "json_object"},
            ),
            what="text completion",
        )
        text = resp.choices[0].message.content if resp.choices else None
        return TextResult(text or "", resp.model or model, _usage_from(resp), attempts)

    def caption_image(self, *, prompt: str, image: bytes, mime: str, context: dict[str, Any]) -> TextResult:
        model = self.settings.openai_vision_model
        data_url = f"data:{mime};base64,{base64.b64encode(image).decode()}"
        resp, attempts = self.call_with_retries(
            lambda: self.client.chat.completions.create(
                model=model, response_format={"type": "json_object"},
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": data_url}},
                ]}],
            ),
            what="image caption",
        )
        text = resp.choices[0].message.content if resp.choices else None
        return TextResult(text or "", resp.model or model, _usage_from(resp), attempts)

    def generate_image(self, *, prompt: str, references: list[tuple[bytes, str]], context: dict[str, Any],
                       before_attempt: Callable[[], None] | None = None) -> ImageResult:
        model = self.settings.openai_image_model
        refs = references[:MAX_REFERENCE_IMAGES]
        if refs:
            def files():
                return [(f"ref{i}.{mime.split('/')[-1]}", io.BytesIO(data), mime) for i, (data, mime) in enumerate(refs)]
            call = lambda: self.client.images.edit(  # noqa: E731
                model=model, image=files(), prompt=prompt, input_fidelity="high", size=self.settings.openai_image_size,
                quality=self.settings.openai_image_quality,
            )
        else:
            call = lambda: self.client.images.generate(  # noqa: E731
                model=model, prompt=prompt, size=self.settings.openai_image_size, quality=self.settings.openai_image_quality,
            )
        resp, attempts = self.call_with_retries(call, what="image generation", before_attempt=before_attempt)
        if not resp.data or not getattr(resp.data[0], "b64_json", None):
            raise ProviderError("The image response contained no image data.", kind="malformed", attempts=attempts)
        try:
            data = base64.b64decode(resp.data[0].b64_json, validate=True)
        except ValueError as err:
            raise ProviderError(f"The image data was not valid base64: {err}", kind="malformed", attempts=attempts) from None
        usage = _usage_from(resp)
        return ImageResult(data, model, Usage(usage.tokens_in, usage.tokens_out, usage.image_tokens_in, 1), attempts)


def get_provider(settings: Settings | None = None) -> Provider:
    settings = settings or get_settings()
    return OpenAIProvider(settings) if settings.provider_name == "openai" else OfflineProvider(settings)
