"""The harness of the fuzz suite (tests/fuzz): every reader and every command against broken and
hostile input.

Each fuzz test draws seeded cases and runs each one under ``Fuzz.case``, which allows exactly
two outcomes: a clean error (an ``MtsnnError`` whose message is one printable line, or for a
command the documented exit code with one ``PROG: error: ...`` line on stderr) or an accepted
input that the test's own consistency check passes. Anything else is counted and fails the test:
another exception (a crash), more than ``HANG_S`` seconds (a hang, stopped by SIGALRM), a
``MemoryError`` (the address space is limited to the current size + ``AS_HEADROOM`` while the
cases run), a message of several lines or with control characters, an inconsistent result.

Environment: ``MTSNN_FUZZ_CASES`` sets every fuzz test's case count (defaults keep the suite
near one minute of CI time), ``MTSNN_FUZZ_SEED`` the seed, ``MTSNN_FUZZ_REPORT`` a JSON file
the counts of each test are merged into (one object per test).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import sys
import time
from pathlib import Path

from mtsnn.hw_model.errors import MtsnnError

HANG_S = 10.0
AS_HEADROOM = 3 * 2**30

# tiny training settings: a few hundred milliseconds per run
TINY_ARCH = "4C3p1-P2-16"
TINY_TRAIN = ["--epochs", "1", "--arch", TINY_ARCH, "--batch-size", "256"]


def fuzz_cases(default: int) -> int:
    return int(os.environ.get("MTSNN_FUZZ_CASES", default))


def fuzz_seed() -> int:
    return int(os.environ.get("MTSNN_FUZZ_SEED", "20240601"))


class Hang(BaseException):
    """Raised by SIGALRM in a case that ran longer than HANG_S."""


class Inconsistent(AssertionError):
    """An accepted input whose result is wrong (the test's consistency check failed)."""


class Dirty(AssertionError):
    """A refusal that is not clean: several lines, control characters, a traceback, a wrong code."""


def _on_alarm(signum, frame):
    raise Hang()


def clean_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message and "\r" not in message and message.isprintable()


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class Fuzz:
    """Counts and problems of one fuzz test; ``case`` runs one case and classifies it."""

    def __init__(self, name: str, known_bugs: dict | None = None):
        self.name = name
        # regex on "ExceptionType: message" -> the xfail test that documents it; a crash that
        # matches is counted as "known_bugs", not as a new problem
        self.known_bugs = dict(known_bugs or {})
        self.counts = dict(tried=0, clean_errors=0, accepted=0, crashes=0, hangs=0, memory_blowups=0,
                           dirty_messages=0, inconsistent=0, slowest_s=0.0)
        self.problems: list[str] = []
        self.started = time.monotonic()

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    @contextlib.contextmanager
    def limits(self):
        """Address-space limit and the alarm handler for the duration of the cases."""
        limit_as = None
        if sys.platform.startswith("linux"):
            limit_as = resource.getrlimit(resource.RLIMIT_AS)
            wanted = _vm_bytes() + AS_HEADROOM
            if limit_as[1] == resource.RLIM_INFINITY or wanted <= limit_as[1]:
                resource.setrlimit(resource.RLIMIT_AS, (wanted, limit_as[1]))
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            yield self
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if limit_as is not None:
                resource.setrlimit(resource.RLIMIT_AS, limit_as)

    def case(self, what: str, function, *, accepted: str = "accepted", limit_s: float = HANG_S) -> str:
        """Run ``function()``; it returns a verdict ("clean" / "accepted" / another counter name)
        or raises. An MtsnnError with a clean one-line message counts as a clean error. More than
        ``limit_s`` seconds is a hang (raise it only for work whose honest cost is known to be
        larger, e.g. starting Ray)."""
        self.counts["tried"] += 1
        t0 = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        verdict = "crashes"
        try:
            try:
                verdict = function() or accepted
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Hang:
            verdict = "hangs"
            self.problems.append(f"{what}: more than {limit_s} s")
        except MemoryError:
            verdict = "memory_blowups"
            self.problems.append(f"{what}: MemoryError")
        except MtsnnError as exc:
            if clean_line(str(exc)):
                verdict = "clean_errors"
            else:
                verdict = "dirty_messages"
                self.problems.append(f"{what}: dirty message {str(exc)[:300]!r}")
        except Inconsistent as exc:
            verdict = "inconsistent"
            self.problems.append(f"{what}: inconsistent: {str(exc)[:300]}")
        except Dirty as exc:
            verdict = "dirty_messages"
            self.problems.append(f"{what}: {str(exc)[:400]}")
        except Exception as exc:  # noqa: BLE001 - any other exception is what the suite hunts
            text = f"{type(exc).__name__}: {exc}"
            if any(re.search(pattern, text) for pattern in self.known_bugs):
                verdict = "known_bugs"
            elif "can't allocate memory" in text or "DefaultCPUAllocator" in text:  # torch under RLIMIT_AS
                verdict = "memory_blowups"
                self.problems.append(f"{what}: {text[:300]}")
            else:
                verdict = "crashes"
                self.problems.append(f"{what}: {text[:300]}")
        finally:
            self.counts["slowest_s"] = max(self.counts["slowest_s"], round(time.monotonic() - t0, 3))
        if verdict == "clean":
            verdict = "clean_errors"
        self.bump(verdict)
        return verdict

    def finish(self, *, want_clean: bool = True, want_accepted: bool = True) -> None:
        self.counts["seconds"] = round(time.monotonic() - self.started, 1)
        summary = json.dumps(self.counts)
        print(f"\n{self.name}: {summary}")
        report = os.environ.get("MTSNN_FUZZ_REPORT")
        if report:
            path = Path(report)
            try:
                merged = json.loads(path.read_text()) if path.is_file() else {}
            except ValueError:
                merged = {}
            merged[self.name] = dict(self.counts, problems=self.problems[:50])
            path.write_text(json.dumps(merged, indent=1))
        assert self.problems == [], self.problems[:20]
        if want_clean:
            assert self.counts["clean_errors"] > 0, self.counts
        if want_accepted:
            assert self.counts["accepted"] > 0, self.counts


def train_tiny(out: Path, **overrides):
    import torch

    from mtsnn import api

    threads = torch.get_num_threads()
    try:
        settings = dict(arch=TINY_ARCH, epochs=1, batch_size=256, out=out, progress=False, threads=1)
        settings.update(overrides)
        return api.train(**settings)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the command line

EXIT_CODES = (0, 1, 2, 3)
# lines a command may print on stderr besides its one error line (notes, warnings, progress)
_ALLOWED_STDERR = ("note: ", "warning: ", "validating ", "  simulator done", "  reference done", "  qat done",
                   "  onnxruntime done", "  shard ", "  checked ", "training ", "resuming ")


def check_streams(prog: str, rc, out: str, err: str, *, exited: bool, argv) -> str:
    """The rules of docs/cli.md for one finished command; raises Dirty, returns a verdict.

    rc 0: accepted; 2/3: one ``PROG: error: ...`` line, the last one on stderr; 1: a divergence
    (validate, the SANA-FE cross-check), never with a traceback; SystemExit only from argparse
    (0 for --help/--version, 2 with its one-line usage error)."""
    if "Traceback (most recent call last)" in err or "Traceback (most recent call last)" in out:
        raise Dirty(f"traceback on {'stderr' if 'Traceback' in err else 'stdout'}: {err[-600:]!r}")
    if not isinstance(rc, int) or isinstance(rc, bool) or rc not in EXIT_CODES:
        raise Dirty(f"exit code {rc!r}, expected one of {EXIT_CODES}")
    lines = [segment for line in err.split("\n") for segment in line.split("\r")[-1:] if segment.strip()]
    errors = [line for line in lines if line.startswith(f"{prog}: error:")]
    if exited:  # argparse: a subcommand's leftover arguments are the umbrella parser's error
        errors = [line for line in lines if line.startswith((f"{prog}: error:", f"{prog.split()[0]}: error:"))]
        asked = any(a in ("-h", "--help", "--version") for a in argv if isinstance(a, str))
        if rc == 0 and not asked:
            raise Dirty("SystemExit(0) without --help or --version")
        if rc == 0:
            return "accepted"
        if rc != 2 or len(errors) != 1 or lines[-1] != errors[0]:
            raise Dirty(f"argparse exit {rc} with stderr {err[-400:]!r}")
        if not clean_line(errors[0]):
            raise Dirty(f"usage error not one printable line: {errors[0][:200]!r}")
        return "clean_errors"
    if rc == 0:
        if errors:
            raise Dirty(f"exit 0 with an error line {errors[0][:200]!r}")
        return "accepted"
    if rc == 1:
        if errors:
            raise Dirty(f"exit 1 (divergence) with an error line {errors[0][:200]!r}")
        return "divergence"
    if len(errors) != 1 or lines[-1] != errors[0]:
        raise Dirty(f"exit {rc}: expected one '{prog}: error: ...' line last on stderr, found {err[-500:]!r}")
    if not clean_line(errors[0]):
        raise Dirty(f"error line not printable: {errors[0][:300]!r}")
    stray = [line for line in lines[:-1] if not line.startswith(_ALLOWED_STDERR)]
    if stray:
        raise Dirty(f"exit {rc}: unexpected stderr lines {stray[:3]!r}")
    return "clean_errors"


def cli_call(entry, argv, capsys, prog: str):
    """Run a command in-process; (verdict, rc, stdout, stderr) after ``check_streams``."""
    capsys.readouterr()
    exited = False
    try:
        rc = entry(list(argv))
    except SystemExit as exc:
        exited = True
        rc = exc.code if exc.code is not None else 0
    out, err = capsys.readouterr()
    verdict = check_streams(prog, rc, out, err, exited=exited, argv=argv)
    return verdict, rc, out, err
