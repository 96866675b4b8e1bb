"""Automatic certificate reload (beyond nats-server, cf. its issue #3475): ``watch: true`` in
a ``tls {}`` block.

``TLSFileWatch`` polls, every ``interval`` seconds (1 s by default: one ``stat`` per file), the
certificate, key, key-password and CA files of every block that has ``watch`` on. A file counts
as changed when its device, inode, size, mtime or ctime differ from what was last seen, or it
appeared or vanished. That catches an in-place write, an atomic replace (a new file renamed over
the old one, as cert-manager and most tools do) and a symlink swap such as Kubernetes' ``..data``
directory (``stat`` follows links, so the new target's inode shows).

On a change the watch waits until the files stop changing for ``settle`` seconds (a writer that
replaces the certificate and then the key is seen as one change), then calls the reloader with
the block's name. The reloader (``pynatsd.reload.refresh_tls``) builds the new contexts and swaps
them in for every listener using that block only if all of them load cleanly (the key matches
the certificate, the CA parses), logging the outcome either way. After a failure the old
certificate keeps serving and nothing is retried until the files change again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping

from pynatsd.config.options import TLSOptions

log = logging.getLogger("pynatsd.tls")

# (device, inode, size, mtime ns, ctime ns) of a file, None when it cannot be stat'ed
Fingerprint = tuple[int, int, int, int, int] | None

DEFAULT_INTERVAL = 1.0
_MAX_SETTLE_ROUNDS = 20  # a file rewritten without pause for this long is loaded as it is


def fingerprint(path: str) -> Fingerprint:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fingerprints(paths: Iterable[str]) -> dict[str, Fingerprint]:
    return {p: fingerprint(p) for p in paths}


def tls_files(tls: TLSOptions) -> tuple[str, ...]:
    """Every file a tls block reads, in a stable order without duplicates."""
    files: list[str] = []
    for p in (tls.cert_file, tls.key_file, tls.key_password_file, tls.ca_file):
        if p:
            files.append(p)
    for cert, key in tls.certificates:
        files += [cert, key]
    return tuple(dict.fromkeys(files))


def first_cert(tls: TLSOptions) -> str:
    """The certificate file a block serves first (for messages)."""
    if tls.cert_file:
        return tls.cert_file
    return tls.certificates[0][0] if tls.certificates else ""


class _Block:
    __slots__ = ("name", "files", "seen")

    def __init__(self, name: str, files: tuple[str, ...], seen: dict[str, Fingerprint]) -> None:
        self.name = name
        self.files = files
        self.seen = seen


class TLSFileWatch:
    """Polls the files of the watched tls blocks and reloads a block when they change.

    ``reloader(block_name) -> bool`` is called on the event loop once the files are stable.
    ``configure`` sets (or replaces, after a config reload) the watched blocks; the polling task
    runs while at least one block is watched.
    """

    def __init__(
        self,
        reloader: Callable[[str], bool],
        *,
        interval: float = DEFAULT_INTERVAL,
        settle: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.reloader = reloader
        self.interval = interval if interval > 0 else DEFAULT_INTERVAL
        self.settle = settle if settle is not None else min(0.2, self.interval)
        self.loop = loop
        self.blocks: dict[str, _Block] = {}
        self.reloads = 0  # successful reloads (tests, /metrics)
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    # -- configuration -----------------------------------------------------------------------

    def configure(
        self, blocks: Mapping[str, TLSOptions], baseline: Mapping[str, Fingerprint] | None = None
    ) -> None:
        """Watch exactly ``blocks`` (name -> options). ``baseline``: fingerprints taken just
        before those files were last loaded, so a change made while loading is not missed."""
        new: dict[str, _Block] = {}
        for name, tls in blocks.items():
            files = tls_files(tls)
            seen = {p: (baseline[p] if baseline is not None and p in baseline else fingerprint(p)) for p in files}
            new[name] = _Block(name, files, seen)
        self.blocks = new
        if new:
            self._ensure_task()
        else:
            self._cancel_task()

    def _ensure_task(self) -> None:
        if self._task is not None and not self._task.done():
            return
        loop = self.loop or asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="pynatsd-tls-watch")

    def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.blocks = {}
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- polling ---------------------------------------------------------------------------------

    def changed(self) -> list[str]:
        """Names of the blocks whose files differ from what was last seen."""
        return [b.name for b in self.blocks.values() if fingerprints(b.files) != b.seen]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for name in self.changed():
                try:
                    await self._reload(name)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not end the watch
                    log.exception("TLS certificate watch: reloading %s failed", name)

    async def _reload(self, name: str) -> None:
        block = self.blocks.get(name)
        if block is None:
            return
        # wait until the files have stopped changing (cert and key written one after the other)
        current = fingerprints(block.files)
        for _ in range(_MAX_SETTLE_ROUNDS):
            await asyncio.sleep(self.settle)
            again = fingerprints(block.files)
            if again == current:
                break
            current = again
        if self.blocks.get(name) is not block:
            return  # reconfigured meanwhile (a config reload loaded the files itself)
        # What is recorded is what was seen before loading: a change during the load shows
        # up on the next poll and is loaded again.
        block.seen = current
        if self.reloader(name):
            self.reloads += 1
        else:
            self.failures += 1
