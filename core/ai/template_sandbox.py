"""The template sandbox, and the child process every render runs in.

Two layers keep an editor's template from exhausting the machine:

(a) `LimitedSandbox`, a jinja2 SandboxedEnvironment that refuses, before
    computing them, the expressions that blow up: `*`, `**`, `+` and `%` on
    huge operands, `range` longer than RANGE_MAX, widths beyond the output
    limit (`center`, `format`, `str.ljust`...), macro recursion deeper than
    CALL_DEPTH_MAX, more than CALLS_MAX calls, and output longer than
    OUTPUT_MAX (counted while rendering, so a runaway loop stops early).
(b) The hard limit: this module's `main()` runs in a child process with
    RLIMIT_AS (memory) and a per-render RLIMIT_CPU, and the parent
    (core/ai/template_runner.py) kills it on a wall-clock timeout. Whatever (a)
    does not foresee (string doubling with `~`, a regex of pathological cost)
    ends there.

This module imports only jinja2 and the standard library: the child starts
in a fraction of a second and never touches the database or settings.
"""
from __future__ import annotations

import json
import re
import resource
import sys
import threading
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

OUTPUT_MAX = 20_000  # characters a render may produce (also the cap for any string a template builds)
RANGE_MAX = 10_000  # items range() may yield
INT_BITS_MAX = 4_096  # integers a template computes (~1,200 digits)
CALL_DEPTH_MAX = 40  # nested macro / function calls
CALLS_MAX = 200_000  # calls in one render


class TemplateLimit(Exception):
    """A template went past one of the limits above; the message names the limit."""


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > INT_BITS_MAX:
        raise TemplateLimit(f"{what} gives a number larger than the template limit ({INT_BITS_MAX} bits).")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _check_widths(fmt: str, *, style: str) -> None:
    """Format strings may not ask for padding or precision beyond the output limit ('%999999999d', '{:>999999}')."""
    if style == "%":
        numbers = [g for m in _PERCENT_SPEC.finditer(fmt) for g in m.groups() if g and g != "*"]
    else:
        numbers = [n for m in _BRACE_SPEC.finditer(fmt) for n in re.findall(r"\d+", m.group(1))]
    for number in numbers:
        if len(number) > 6 or int(number) > OUTPUT_MAX:
            raise TemplateLimit(f"A format width of {number} is larger than the output limit ({OUTPUT_MAX} characters).")


def _binop(op: str, left: Any, right: Any) -> Any:
    """Estimate the size of the result first; refuse what would pass the limits, compute the rest."""
    ls, rs = _size(left), _size(right)
    if op == "*":
        if ls is not None and isinstance(right, int) or rs is not None and isinstance(left, int):
            n = right if ls is not None else left
            if (ls if ls is not None else rs) * max(int(n), 0) > OUTPUT_MAX:
                raise TemplateLimit(f"Repeating a text or list {n} times passes the output limit ({OUTPUT_MAX} characters).")
        elif isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > INT_BITS_MAX:
                raise TemplateLimit(f"Multiplying gives a number larger than the template limit ({INT_BITS_MAX} bits).")
        return left * right
    if op == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            if left.bit_length() * right > INT_BITS_MAX:
                raise TemplateLimit(f"'**' gives a number larger than the template limit ({INT_BITS_MAX} bits).")
        try:
            return left**right
        except OverflowError as err:
            raise TemplateLimit(f"'**' overflows: {err}.") from None
    if op == "+":
        if ls is not None and rs is not None and ls + rs > OUTPUT_MAX:
            raise TemplateLimit(f"Joining with '+' passes the output limit ({OUTPUT_MAX} characters).")
        result = left + right
        _check_int(result, "'+'")
        return result
    if op == "%":
        if isinstance(left, str):
            _check_widths(left, style="%")
        return left % right
    raise SecurityError(f"operator {op!r} is not intercepted")


class _Budget(threading.local):
    depth = 0
    calls = 0


class LimitedSandbox(SandboxedEnvironment):
    """The sandbox with size checks; see the module docstring."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(loader=None, undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                         trim_blocks=True, lstrip_blocks=True)
        self.budget = _Budget()
        self.globals.pop("lipsum", None)  # lipsum(n=10**6) builds megabytes; no prompt needs filler text
        self.globals["range"] = _capped_range
        for name, check in (("center", _width_arg), ("indent", _width_arg), ("format", _format_filter),
                            ("replace", _replace_filter), ("join", _join_filter)):
            self.filters[name] = _guarded_filter(self.filters[name], check)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        return _binop(operator_, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        budget = __self.budget
        budget.calls += 1
        if budget.calls > CALLS_MAX:
            raise TemplateLimit(f"The template makes more than {CALLS_MAX} calls.")
        if budget.depth >= CALL_DEPTH_MAX:
            raise TemplateLimit(f"Macros or calls nest deeper than {CALL_DEPTH_MAX} levels (runaway recursion?).")
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)  # str.format comes wrapped
        if isinstance(owner, str):
            for value in (*args, *kwargs.values()):
                if isinstance(value, int) and value > OUTPUT_MAX:
                    raise TemplateLimit(f"{value} is larger than the output limit ({OUTPUT_MAX} characters).")
            _check_widths(owner, style="{")
            if getattr(__obj, "__name__", "") in ("replace", "join"):
                _check_replace_join(owner, __obj.__name__, args)
        budget.depth += 1
        try:
            return SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1


def _capped_range(*args: int) -> range:
    r = range(*args)
    if len(r) > RANGE_MAX:
        raise TemplateLimit(f"range() of {len(r)} items is over the limit of {RANGE_MAX}.")
    return r


def _check_replace_join(text: str, method: str, args: tuple) -> None:
    if method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = text.count(args[0]) if args[0] else len(text) + 1
        if len(text) + hits * max(len(args[1]) - len(args[0]), 0) > OUTPUT_MAX:
            raise TemplateLimit(f"replace() would pass the output limit ({OUTPUT_MAX} characters).")
    if method == "join" and args and isinstance(args[0], (list, tuple)):
        if len(text) * len(args[0]) + sum(len(str(x)) for x in args[0]) > OUTPUT_MAX:
            raise TemplateLimit(f"join() would pass the output limit ({OUTPUT_MAX} characters).")


def _width_arg(value: Any, *args: Any, **kwargs: Any) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and arg > OUTPUT_MAX:
            raise TemplateLimit(f"A width of {arg} is larger than the output limit ({OUTPUT_MAX} characters).")


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_widths(str(value), style="%")


def _replace_filter(value: Any, *args: Any, **kwargs: Any) -> None:
    if len(args) >= 2:
        _check_replace_join(str(value), "replace", (str(args[0]), str(args[1])))


def _join_filter(value: Any, *args: Any, **kwargs: Any) -> None:
    sep = str(args[0]) if args else str(kwargs.get("d", ""))
    if isinstance(value, (list, tuple)) and len(sep) * len(value) > OUTPUT_MAX:
        raise TemplateLimit(f"join would pass the output limit ({OUTPUT_MAX} characters).")


def _guarded_filter(fn: Any, check: Any) -> Any:
    """Run `check` on a filter's arguments before the filter (keeps jinja's pass_* markers)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        plain = [a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.nodes.EvalContext, jinja2.Environment))]
        if plain:
            check(*plain, **kwargs)
        return fn(*args, **kwargs)

    for marker in ("jinja_pass_arg",):
        if hasattr(fn, marker):
            setattr(wrapper, marker, getattr(fn, marker))
    return wrapper


@lru_cache(maxsize=1)
def _env() -> LimitedSandbox:
    return LimitedSandbox()


@lru_cache(maxsize=256)
def _compile(body: str) -> jinja2.Template:
    return _env().from_string(body)


def render(body: str, context: dict[str, Any]) -> str:
    """Render with layer (a) only. Raises jinja2 errors, TemplateLimit, or what a template does wrong."""
    template = _compile(body)
    budget = _env().budget
    budget.depth = budget.calls = 0
    parts: list[str] = []
    size = 0
    for chunk in template.generate(**context):
        size += len(chunk)
        if size > OUTPUT_MAX:
            raise TemplateLimit(f"The rendered prompt passes the output limit ({OUTPUT_MAX} characters).")
        parts.append(chunk)
    return "".join(parts).strip()


def describe_error(err: BaseException, variables: list[str]) -> tuple[str, str]:
    """(kind, editor-facing message) for anything a render raised."""
    if isinstance(err, TemplateLimit):
        return "limit", str(err)
    if isinstance(err, MemoryError):
        return "memory", "The template needs more memory than a render may use."
    if isinstance(err, RecursionError):
        return "limit", f"The template nests too deeply (recursion). Limit: {CALL_DEPTH_MAX} levels."
    if isinstance(err, jinja2.TemplateSyntaxError):
        return "problem", f"Syntax error on line {err.lineno}: {err.message}"
    if isinstance(err, jinja2.UndefinedError):
        return "problem", f"Unknown variable: {err.message}. Available: {', '.join(sorted(variables))}."
    if isinstance(err, SecurityError):
        return "problem", f"Not allowed in a template: {err}"
    if isinstance(err, jinja2.TemplateError):
        return "problem", f"Template error: {err}"
    return "problem", f"Template failed while rendering: {err.__class__.__name__}: {err}"


# ---------------------------------------------------------------- the child process
def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def main() -> None:
    """Serve renders over stdin/stdout, one JSON object per line, under resource limits.

    argv: memory budget in MB, CPU seconds per render. Exits on EOF (the parent is gone)
    and after a memory breach (the heap may be in a poor state; the parent starts a fresh child).
    """
    memory_mb, cpu_s = int(sys.argv[1]), int(sys.argv[2])
    _env()  # build the environment before limiting memory
    limit = _vm_bytes() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(2_000)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")  # start-up is not render time: the parent waits for this first
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_s, resource.RLIM_INFINITY))
        try:
            reply = {"ok": render(request["body"], request["context"])}
        except Exception as err:  # every failure (MemoryError and RecursionError too) becomes a message for the parent
            kind, message = describe_error(err, list(request["context"]))
            reply = {"error": message, "kind": kind}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if reply.get("kind") == "memory":
            return


if __name__ == "__main__":
    main()
