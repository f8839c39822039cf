"""A local HTTP server that speaks enough of the OpenAI API for error-path tests.

Tests script responses per endpoint; the real openai SDK talks to it through
OPENAI_BASE_URL. Every request is recorded so tests can count attempts.
"""
from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from PIL import Image


def png_b64(colour: str = "#aa3366", size: tuple[int, int] = (64, 64)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def chat_ok(content: str, prompt_tokens: int = 120, completion_tokens: int = 30, model: str = "gpt-4o-mini") -> dict:
    return {"status": 200, "json": {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }}


def image_ok(input_tokens: int = 300, output_tokens: int = 4000, image_tokens: int = 200) -> dict:
    return {"status": 200, "json": {
        "created": 0, "data": [{"b64_json": png_b64()}],
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens,
                  "input_tokens_details": {"text_tokens": input_tokens - image_tokens, "image_tokens": image_tokens}},
    }}


def error(status: int, message: str, code: str | None = None, headers: dict | None = None) -> dict:
    return {"status": status, "headers": headers or {},
            "json": {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}}


@dataclass
class Recorded:
    path: str
    time: float
    content_type: str
    body: bytes


@dataclass
class Stub:
    url: str
    scripts: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    requests: list[Recorded] = field(default_factory=list)

    def script(self, path: str, *responses: dict) -> None:
        self.scripts[path].extend(responses)

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]


def start_stub() -> tuple[Stub, http.server.ThreadingHTTPServer]:
    stub = Stub(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            path = self.path.removeprefix("/v1")
            stub.requests.append(Recorded(path, time.monotonic(), self.headers.get("content-type", ""), body))
            queue = stub.scripts.get(path)
            resp = queue.popleft() if queue else error(404, f"no scripted response for {path}")
            if resp.get("sleep"):
                time.sleep(resp["sleep"])
            raw = resp["raw"].encode() if "raw" in resp else json.dumps(resp["json"]).encode()
            try:
                self.send_response(resp["status"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in resp.get("headers", {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up, which is what a timeout test wants

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return stub, server
