"""The line protocol and the worker subprocess handling (SuperResolutionLib.protocol / process)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from SuperResolutionLib import protocol
from SuperResolutionLib.process import WorkerFailed, WorkerProcess, kill_process_tree

from tests.slicer.conftest import MODULE_DIR


def _launch(args, useStartupEnvironment=True, updateEnvironment=None, cwd=None):
    """Like slicer.util.launchConsoleProcess (stdout piped, stderr merged, text mode)."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=cwd)


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def test_encode_decode_round_trip_and_plain_lines():
    line = protocol.encode("progress", fraction=0.25, text="5 / 20 slices")
    message = protocol.decode(line + "\n")
    assert message.kind == "progress" and message.fraction == 0.25 and message.text == "5 / 20 slices"
    assert protocol.decode("rmisr: loading the model") is None
    assert protocol.decode(protocol.PREFIX + "{not json") is None
    assert protocol.decode(protocol.PREFIX + '{"kind": "other"}') is None
    assert protocol.decode(protocol.encode("progress", fraction=7)).fraction == 1.0
    with pytest.raises(ValueError, match="unknown message kind"):
        protocol.encode("result")
    stream = io.StringIO()
    protocol.emit("error", stream=stream, text="bad")
    assert protocol.decode(stream.getvalue()).text == "bad"
    with pytest.raises(ValueError):
        protocol.encode("progress", fraction=float("nan"))  # strict JSON only


def test_worker_process_streams_progress_logs_and_done():
    body = f"""
        import sys, time
        sys.path.insert(0, {str(MODULE_DIR)!r})
        from SuperResolutionLib import protocol
        for i in range(1, 4):
            protocol.emit("progress", fraction=i / 4, text=f"step {{i}}")
        print("a plain log line", file=sys.stderr, flush=True)
        protocol.emit("done", output="x.mha")
    """
    logged = []
    worker = WorkerProcess(_script(body), _launch, log=logged.append)
    seen = []
    done = worker.wait(lambda fraction, text: seen.append((fraction, text)))
    assert done.fields == {"output": "x.mha"}
    assert seen == [(0.25, "step 1"), (0.5, "step 2"), (0.75, "step 3")]
    assert logged == ["a plain log line"] and worker.fraction == 0.75


def test_worker_error_line_becomes_the_exception_message():
    body = f"""
        import sys
        sys.path.insert(0, {str(MODULE_DIR)!r})
        from SuperResolutionLib import protocol
        protocol.emit("error", text="in.mha: no such file or folder")
        sys.exit(2)
    """
    with pytest.raises(WorkerFailed, match="^in.mha: no such file or folder$"):
        WorkerProcess(_script(body), _launch).wait()
    with pytest.raises(WorkerFailed, match="stopped unexpectedly \\(exit status 3\\)"):
        WorkerProcess(_script("import sys; sys.exit(3)"), _launch).wait()


def test_kill_takes_the_whole_process_tree():
    # a launcher (like PythonSlicer) whose child does the work: both must go
    body = """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
    """
    logged = []
    worker = WorkerProcess(_script(body), _launch, log=logged.append)
    deadline = time.monotonic() + 20
    while not logged and time.monotonic() < deadline:
        worker.poll()
        time.sleep(0.05)
    child = psutil.Process(int(logged[0]))
    worker.kill()
    assert worker.proc.returncode is not None
    child.wait(timeout=10)  # raises TimeoutExpired if it survived
    assert not child.is_running()
    with pytest.raises(WorkerFailed, match="cancelled"):
        worker.result()


def test_kill_process_tree_of_an_ended_process_is_harmless():
    proc = _launch([sys.executable, "-c", "pass"])
    proc.wait()
    kill_process_tree(proc)
    proc.stdout.close()
    assert proc.returncode == 0
