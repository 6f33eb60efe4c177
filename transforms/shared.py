"""Heavy per-worker objects (models, list and concept matchers), loaded once per worker process.

A ``SharedHandles`` is made when the pipeline is built and travels (pickled) with each DoFn; Beam's
``Shared`` keys its cache by the handle made then, so every thread of a worker process gets the same
loaded object, and nothing heavy is loaded at import or in the launcher's graph. A CLIP model with
``large_model`` is loaded once per machine and shared by its SDK processes (Beam's
``MultiProcessShared``, what RunInference uses), so N processes do not hold N copies on one GPU.

Beam's ``Shared`` keeps one object per handle and reloads it whenever it is asked for another tag:
with two lists (tags A and B), every worker thread's DoFn reloaded both (A, B, A, B: one copy of each
list per thread, not per process). So the handle holds one object, a registry of everything the
process loaded by tag, kept weakly: an object lives while a DoFn holds it and is loaded once however
many tags and threads ask for it.
"""
from __future__ import annotations

import threading
import weakref

from apache_beam.utils.shared import Shared


class _Holder:
    """``Shared`` needs a weak-referenceable object; lists and tuples are not."""

    def __init__(self, value):
        self.value = value


class _Registry:
    """What a worker process loaded, by tag, held weakly (module doc). One loader runs per tag at a
    time; loaders of different tags run concurrently."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loaded: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, tag: str, loader) -> _Holder:
        """The holder of ``tag``'s object, loading it if no DoFn of this process holds it."""
        with self._lock:
            holder = self._loaded.get(tag)
            if holder is not None:
                return holder
            lock = self._loading.setdefault(tag, threading.Lock())
        with lock:
            with self._lock:
                holder = self._loaded.get(tag)
            if holder is None:
                holder = _Holder(loader())
                with self._lock:
                    self._loaded[tag] = holder
        return holder


class SharedHandles:
    """Acquire loaded objects by tag (a fingerprint: same tag, same object) for one worker process."""

    def __init__(self):
        self._shared = Shared()
        self._registry: _Registry | None = None
        self._held: list = []  # strong references: what a DoFn holds stays loaded

    def __getstate__(self):
        return dict(self.__dict__, _registry=None, _held=[])

    def acquire(self, tag: str, loader):
        """The object ``loader()`` returns, loaded once per process for this tag."""
        if self._registry is None:
            self._registry = self._shared.acquire(_Registry, tag="registry")
        holder = self._registry.get(tag, loader)
        self._held.append(holder)
        return holder.value

    def model(self, spec, device: str, batch_size: int, large_model: bool):
        """A loaded CLIP model (``transforms.embed.LoadedClip``), or a proxy to the machine's one."""
        from shardguard.transforms.embed import LoadedClip

        tag = f"clip|{spec.pinned_sha256}|{device}|{batch_size}"
        if large_model:
            from apache_beam.utils.multi_process_shared import MultiProcessShared

            return MultiProcessShared(lambda: LoadedClip(spec, device, batch_size), tag=tag,
                                      always_proxy=True).acquire()
        return self.acquire(tag, lambda: LoadedClip(spec, device, batch_size))
