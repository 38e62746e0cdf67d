"""Forked and spawned workers: no hang after instrument(), and no call lost at a worker's exit.

Each scenario runs tests/fork_app.py in a subprocess with a timeout, so a regression (a child
blocked on a lock or import held across the fork) fails the test instead of hanging the suite.
Every call the application made must be a ledger row and an exported span, with its attribution.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tokentrail.testing import FakeLLMServer

APP = Path(__file__).with_name("fork_app.py")
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer() as fake:
        yield fake


def run_isolated(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` in a session of its own and kill the whole session at the end: a child it
    forked that hangs (a regression) must not outlive the test."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # forked children still there, if any
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def run_app(server: FakeLLMServer, tmp_path: Path, scenario: str, **env: str) -> tuple[list[str], dict]:
    ledger = tmp_path / "ledger.sqlite"
    spans = tmp_path / "spans.jsonl"
    environ = {
        **os.environ,
        "TOKENTRAIL_LEDGER": str(ledger),
        "TOKENTRAIL_PROVIDER_HOSTS": "127.0.0.1=openai",  # priced as OpenAI: the catalogue is used
        "FORK_APP_SPANS": str(spans),
        "FORK_APP_BASE_URL": server.base_url,
        "OTEL_METRICS_EXPORTER": "none",
        "PYTHONPATH": os.pathsep.join([str(APP.parent), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    done = run_isolated([sys.executable, str(APP), scenario], environ)
    assert done.returncode == 0, done.stderr[-3000:]
    result = {}
    for line in done.stdout.strip().splitlines():
        result.update(json.loads(line))
    return result["tasks"], {"ledger": ledger, "spans": spans, "stderr": done.stderr, **result}


def ledger_tasks(path: Path) -> Counter:
    with sqlite3.connect(path) as connection:
        return Counter(task for (task,) in connection.execute("SELECT task FROM calls"))


def span_tasks(path: Path) -> Counter:
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["task"] for line in path.read_text().splitlines())


@pytest.mark.parametrize("sdk_first", ["1", "0"], ids=["sdk-imported-first", "sdk-imported-in-child"])
def test_fork_right_after_instrument_does_not_hang(server, tmp_path, sdk_first):
    # Before the fix the child blocked for ever on an import lock the price warm-up thread held
    # at the fork (3 runs of 3): on pricing's genai-prices import, or on `import openai` itself.
    # The child's call and flush take about 0.1 s, importing openai in the child about 0.5 s more
    # (a quiet 2-core machine); the bounds leave room for a loaded CI machine. A hang is for ever.
    bound = 3.0 if sdk_first == "1" else 6.0
    for _ in range(3):
        _, found = run_app(server, tmp_path, "fork-now", FORK_APP_IMPORT_SDK_FIRST=sdk_first)
        assert found["child_seconds"] < bound, found
    assert ledger_tasks(found["ledger"]) == Counter({"child-0": 3})


@pytest.mark.parametrize(
    "scenario",
    [
        "prefork",
        "fork-process",
        "fork-pool",
        "fork-executor",
        "spawn-process",
        "spawn-pool",
        "spawn-executor",
    ],
)
def test_every_call_in_a_worker_is_a_ledger_row_and_an_exported_span(server, tmp_path, scenario):
    tasks, found = run_app(server, tmp_path, scenario)
    assert len(tasks) == 12
    expected = Counter(tasks)
    assert ledger_tasks(found["ledger"]) == expected
    assert span_tasks(found["spans"]) == expected
    assert "Traceback" not in found["stderr"], found["stderr"][-3000:]


HELD_LOCKS = """
import os, sys, threading, time
import tokentrail
from tokentrail import _safety, ledger, run_summary, _setup
tokentrail.instrument(ledger=sys.argv[1])
state = sys.modules["tokentrail.budgets.budget"]  # the package re-exports the class as budget
locks = [_safety._lock, state._names_lock, ledger._lock, _setup._lock, tokentrail._setup._summary._lock]
taken, release = threading.Event(), threading.Event()

def hold():  # an application thread inside tokentrail at the moment another thread forks
    for lock in locks:
        lock.acquire()
    taken.set()
    release.wait()
    for lock in reversed(locks):
        lock.release()

threading.Thread(target=hold, daemon=True).start()
taken.wait()
pid = os.fork()
if pid == 0:
    _safety.warn_once("child", "child warns")
    tokentrail.instrument(ledger=sys.argv[1])
    tokentrail.summary()
    tokentrail.uninstrument()
    os._exit(0)
release.set()
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_while_another_thread_holds_our_locks_does_not_hang(tmp_path):
    done = run_isolated([sys.executable, "-c", HELD_LOCKS, str(tmp_path / "l.sqlite")])
    assert done.stdout.strip() == "0", done.stderr[-2000:]


LAZY_CHILD = """
import json, os, sys, threading
sys.path.insert(0, sys.argv[2])
import tokentrail
from openai_wire import MODEL, FakeOpenAI
tokentrail.instrument(ledger=sys.argv[1])
client = FakeOpenAI().client()
client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
tokentrail.flush()  # the parent's recorder and ledger writer threads are running

def ours():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("tokentrail-"))

parent = ours()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = ours()
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    after = ours()
    tokentrail.flush()
    os.write(write, json.dumps({"before": before, "after": after}).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(read, 10_000))
print(json.dumps({"parent": parent, **child}))
"""


def test_a_forked_child_starts_its_threads_with_its_first_call(tmp_path):
    ledger = tmp_path / "l.sqlite"
    done = run_isolated([sys.executable, "-c", LAZY_CHILD, str(ledger), str(APP.parent)])
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"tokentrail-ledger", "tokentrail-recorder"} <= set(found["parent"])
    assert found["before"] == []  # a worker that never calls never starts a thread
    assert "tokentrail-recorder" in found["after"]  # the ledger writer's starts with its first row
    assert ledger_tasks(ledger) == Counter({None: 2})  # the parent's call and the child's
