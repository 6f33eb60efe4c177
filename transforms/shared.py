"""Heavy per-worker objects (models, list and concept matchers), loaded once per worker process.

A ``SharedHandles`` is made when the pipeline is built and travels (pickled) with each DoFn; Beam's
``Shared`` keys its cache by the handle made then, so every thread of a worker process gets the same
loaded object, and nothing heavy is loaded at import or in the launcher's graph. A CLIP model with
``large_model`` is loaded once per machine and shared by its SDK processes (Beam's
``MultiProcessShared``, what RunInference uses), so N processes do not hold N copies on one GPU.
"""
from __future__ import annotations

from apache_beam.utils.shared import Shared


class _Holder:
    """``Shared`` needs a weak-referenceable object; lists and tuples are not."""

    def __init__(self, value):
        self.value = value


class SharedHandles:
    """Acquire loaded objects by tag (a fingerprint: same tag, same object) for one worker process."""

    def __init__(self):
        self._shared = Shared()
        self._held: list = []  # strong references: Shared frees what nobody holds

    def acquire(self, tag: str, loader):
        """The object ``loader()`` returns, loaded once per process for this tag."""
        holder = self._shared.acquire(lambda: _Holder(loader()), tag=tag)
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
