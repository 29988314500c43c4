"""The worker subprocess seen from the module: launch, stream its lines, report progress, kill it (standard library,
plus ``psutil`` when present).

Follows SlicerMONAIAuto3DSeg (``MONAIAuto3DSegLib/process.py``): the process is started by
``slicer.util.launchConsoleProcess`` (a ``subprocess.Popen`` with stdout piped, stderr merged into it, text mode), a
thread reads its lines into a queue, and the GUI drains the queue from a timer, so nothing blocks the event loop.
``PythonSlicer`` is a launcher that starts the real interpreter as a child, so cancelling kills the whole process
tree (psutil), not only the launcher.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from SuperResolutionLib.protocol import Message, decode

__all__ = ["WorkerProcess", "WorkerFailed", "kill_process_tree"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05


class WorkerFailed(RuntimeError):
    """The worker ended without success; the message is the worker's own ``error`` line when it sent one."""


def kill_process_tree(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and every process it started, then reap it."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            parent = psutil.Process(proc.pid)
            for child in parent.children(recursive=True):
                child.kill()
        except psutil.NoSuchProcess:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class WorkerProcess:
    """A running worker: ``poll()`` returns the protocol messages received so far, ``kill()`` cancels.

    Args:
        command: executable and arguments.
        launch: ``slicer.util.launchConsoleProcess`` in Slicer (any callable with its signature and result).
        environment: variables to add to the process environment (``updateEnvironment``).
        log: receives every plain (non-protocol) output line.
    """

    def __init__(
        self,
        command: Sequence[str],
        launch: Callable[..., subprocess.Popen],
        environment: dict[str, str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.log = log or logger.info
        self.error: str | None = None
        self.done: Message | None = None
        self.fraction = 0.0
        self.killed = False
        self._lines: queue.Queue[str] = queue.Queue()
        # updateEnvironment is passed only when needed (older Slicer versions lack the argument)
        extra = {"updateEnvironment": environment} if environment else {}
        self.proc = launch(list(command), **extra)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                line = self.proc.stdout.readline()
            except UnicodeDecodeError:  # a library printed bytes that are not text: skip the line, keep reading
                continue
            if not line:
                break
            self._lines.put(line)
        self.proc.stdout.close()

    def poll(self) -> list[Message]:
        """Messages received since the last call (plain lines go to ``log``); updates ``fraction``, ``error`` and
        ``done``."""
        messages = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            message = decode(line)
            if message is None:
                if line.strip():
                    self.log(line.rstrip())
                continue
            if message.kind == "progress":
                self.fraction = message.fraction
            elif message.kind == "error":
                self.error = message.text
            elif message.kind == "done":
                self.done = message
            messages.append(message)
        return messages

    @property
    def finished(self) -> bool:
        """The process has exited and all its output has been read."""
        return self.proc.poll() is not None and not self._reader.is_alive() and self._lines.empty()

    def result(self) -> Message:
        """The ``done`` message of a finished, successful run.

        Raises:
            WorkerFailed: cancelled, or the process failed (with its ``error`` line, or its exit status).
        """
        if self.killed:
            raise WorkerFailed("cancelled")
        code = self.proc.returncode
        if self.error is not None:
            raise WorkerFailed(self.error)
        if code != 0 or self.done is None:
            raise WorkerFailed(f"the super-resolution process stopped unexpectedly (exit status {code}); see the log")
        return self.done

    def wait(self, progress: Callable[[float, str], None] | None = None) -> Message:
        """Block until the process ends, calling ``progress(fraction, text)`` on each progress message; returns
        :meth:`result`."""
        while True:
            finished = self.finished  # read before polling, so that no line arrives unseen after the last poll
            for message in self.poll():
                if message.kind == "progress" and progress is not None:
                    progress(message.fraction, message.text)
            if finished:
                return self.result()
            time.sleep(POLL_SECONDS)

    def kill(self) -> None:
        """Cancel: kill the process tree (the result is then :class:`WorkerFailed` ``"cancelled"``)."""
        self.killed = True
        kill_process_tree(self.proc)
        self._reader.join(timeout=5)
