"""An application that forks: run as a script by tests/test_fork.py, one scenario per run.

It sets up its own tracer provider (a batch span processor exporting to a file, as an OTLP
exporter would to a collector), instruments, makes calls to the fake provider server in worker
processes started as the scenario says, and prints one JSON line: the calls it made. The test
compares that with the ledger's rows and the exported spans. A spawned worker imports this module
afresh, so the set-up runs at import, in every process.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tokentrail

SPAN_FILE = os.environ["FORK_APP_SPANS"]
BASE_URL = os.environ["FORK_APP_BASE_URL"]
MODEL = "gpt-4o-mini"


class FileSpanExporter(SpanExporter):
    """One line per exported call span: its task attribution and the exporting process."""

    def export(self, spans):  # type: ignore[no-untyped-def]
        with open(SPAN_FILE, "a", encoding="utf-8") as out:
            for span in spans:
                if span.kind.name == "CLIENT":
                    task = (span.attributes or {}).get("tokentrail.task")
                    out.write(json.dumps({"task": task, "pid": os.getpid()}) + "\n")
        return SpanExportResult.SUCCESS


def _set_up() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(), schedule_delay_millis=60_000))
    trace.set_tracer_provider(provider)
    if os.environ.get("FORK_APP_IMPORT_SDK_FIRST") == "1":
        import openai  # noqa: F401
    tokentrail.instrument()


_set_up()


def call(task: str) -> str:
    import openai

    client = openai.OpenAI(base_url=BASE_URL, api_key="sk-test", max_retries=0)
    with tokentrail.attribute(task=task):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    return task


def process_worker(prefix: str, count: int) -> None:
    for index in range(count):
        call(f"{prefix}-{index}")


def scenario(name: str) -> list[str]:
    """Run one scenario; the tasks of every call made."""
    if name == "fork-now":
        # Fork at once after instrument(): the child calls and flushes; it must not hang.
        pid = os.fork()
        if pid == 0:
            forked = time.monotonic()
            call("child-0")
            tokentrail.flush()
            print(json.dumps({"child_seconds": time.monotonic() - forked}), flush=True)
            os._exit(0)
        _wait(pid)
        return ["child-0"]
    if name == "prefork":
        # gunicorn-style: N workers forked after instrument() (--preload), each serving calls and
        # ending with sys.exit(), as gunicorn's workers do.
        pids = []
        for worker in range(4):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    process_worker(f"w{worker}", 3)
                except BaseException:
                    code = 1
                sys.exit(code)
            pids.append(pid)
        for pid in pids:
            _wait(pid)
        return [f"w{w}-{i}" for w in range(4) for i in range(3)]
    method, kind = name.split("-")  # e.g. "fork-process", "spawn-pool", "fork-executor"
    context = multiprocessing.get_context(method)
    tasks = [f"{kind}-{i}" for i in range(12)]
    if kind == "process":
        processes = [context.Process(target=process_worker, args=(f"p{w}", 3)) for w in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        return [f"p{w}-{i}" for w in range(4) for i in range(3)]
    if kind == "pool":
        with context.Pool(3) as pool:  # the with block ends in terminate(): SIGTERM to workers
            assert pool.map(call, tasks) == tasks
        return tasks
    if kind == "executor":
        with concurrent.futures.ProcessPoolExecutor(3, mp_context=context) as executor:
            assert list(executor.map(call, tasks)) == tasks
        return tasks
    raise SystemExit(f"unknown scenario {name}")


def _wait(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"child {pid} failed: {status}")
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    raise SystemExit(f"child {pid} hung for 30 s")


if __name__ == "__main__":
    started = time.monotonic()
    made = scenario(sys.argv[1])
    print(json.dumps({"tasks": made, "seconds": time.monotonic() - started}), flush=True)
