"""Every template render goes through a small pool of long-lived child processes.

The child (core/ai/template_sandbox.py `main`) renders under RLIMIT_AS and a
per-render RLIMIT_CPU; here the parent adds the wall-clock deadline. A child
that breaches a limit, crashes or misses the deadline is killed and replaced,
and the render is refused with a TemplateLimitError naming the limit. Children
are reused across renders (starting one costs ~0.2 s; a render costs ~1 ms),
and the pool is thread-safe: a worker runs slots in a ThreadPoolExecutor, each
slot borrows a child for the length of one render.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from core.errors import ValidationError
from core.settings import PROJECT_ROOT, get_settings

log = logging.getLogger(__name__)


class TemplateProblem(ValidationError):
    """A template that does not parse or render; the message names the line, variable or limit."""


STARTUP_TIMEOUT_S = 60.0


class TemplateLimitError(TemplateProblem):
    """A render went past a limit (time, memory, output size, ...)."""


class _Child:
    def __init__(self, memory_mb: int, cpu_s: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.ai.template_sandbox", str(memory_mb), str(cpu_s)],
            cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,  # a crash lands in our log
            env={k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "HOME")},
            close_fds=True,
        )
        self.buffer = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("template render child %s did not exit after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError as err:
                log.debug("closing a pipe of render child %s: %s", self.proc.pid, err)

    def exchange(self, request: bytes | None, deadline: float) -> dict[str, Any] | None:
        """Send one request (None: only read the next line); the reply, or None when the deadline passed or the
        child died."""
        if request is not None:
            try:
                self.proc.stdin.write(request)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


class RenderPool:
    """A fixed number of children handed out one render at a time."""

    def __init__(self, *, size: int, timeout_s: float, memory_mb: int) -> None:
        self.size, self.timeout_s, self.memory_mb = size, timeout_s, memory_mb
        self.cpu_s = max(1, math.ceil(timeout_s)) + 1
        self._idle: queue.Queue[_Child | None] = queue.Queue()
        for _ in range(size):
            self._idle.put(None)  # started on first use

    def render(self, body: str, context: dict[str, Any]) -> str:
        request = (json.dumps({"body": body, "context": context}, default=str) + "\n").encode()
        child = self._idle.get()
        try:
            if child is None or not child.alive():
                child = _Child(self.memory_mb, self.cpu_s)
                # a busy machine may take seconds to start an interpreter: that must not count as render time
                if child.exchange(None, time.monotonic() + STARTUP_TIMEOUT_S) is None:
                    child.kill()
                    child = None
                    raise TemplateProblem("The template render process could not be started; see the server log.")
            reply = child.exchange(request, time.monotonic() + self.timeout_s)
            if reply is None:
                code = child.proc.poll()
                child.kill()
                child = None
                if code is None:
                    raise TemplateLimitError(f"The template took longer than the render time limit "
                                             f"({self.timeout_s:g} s) and was stopped.")
                log.warning("template render child exited with code %s during a render", code)
                if code == -signal.SIGXCPU:
                    raise TemplateLimitError(f"The template used more than the render CPU limit ({self.cpu_s} s) "
                                             "and was stopped.")
                raise TemplateLimitError(f"The template stopped its render process (exit code {code}); it probably "
                                         f"needed more than the render limits allow (memory {self.memory_mb} MB).")
            if reply.get("kind") == "memory":
                child.kill()
                child = None
                raise TemplateLimitError(f"The template needs more memory than a render may use ({self.memory_mb} MB).")
            if "error" in reply:
                cls = TemplateLimitError if reply.get("kind") == "limit" else TemplateProblem
                raise cls(reply["error"])
            return reply["ok"]
        finally:
            self._idle.put(child)

    def close(self) -> None:
        for _ in range(self.size):
            child = self._idle.get()
            if child is not None:
                child.kill()
            self._idle.put(None)


_pool: RenderPool | None = None
_pool_lock = threading.Lock()


def pool() -> RenderPool:
    """The process-wide pool, rebuilt when the render settings change (tests, operators)."""
    global _pool
    s = get_settings()
    wanted = (max(1, s.template_render_processes), s.template_render_timeout_s, s.template_render_memory_mb)
    with _pool_lock:
        if _pool is None or (_pool.size, _pool.timeout_s, _pool.memory_mb) != wanted:
            if _pool is not None:
                _pool.close()
            _pool = RenderPool(size=wanted[0], timeout_s=wanted[1], memory_mb=wanted[2])
        return _pool


def render(body: str, context: dict[str, Any]) -> str:
    """Render `body` in a child process under every limit; TemplateProblem / TemplateLimitError on failure."""
    return pool().render(body, context)
