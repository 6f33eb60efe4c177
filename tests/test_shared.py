"""Worker-shared objects: loaded once per process per tag, however many tags and DoFn copies ask."""
import gc
import pickle
import threading

from shardguard.transforms.shared import SharedHandles


class _Obj:
    pass


def test_every_tag_is_loaded_once_per_process_across_dofn_copies():
    """Beam's Shared alone reloaded on every change of tag: two lists in two threads were loaded
    A, B, A, B. Each DoFn copy (one per worker thread) unpickles its own handle."""
    handle, calls = SharedHandles(), []

    def load(tag):
        calls.append(tag)
        return _Obj()

    copies = [pickle.loads(pickle.dumps(handle)) for _ in range(3)]
    got = [(c.acquire("A", lambda: load("A")), c.acquire("B", lambda: load("B"))) for c in copies]
    assert calls == ["A", "B"]
    assert all(g[0] is got[0][0] and g[1] is got[0][1] for g in got)


def test_concurrent_acquires_load_once_and_objects_go_when_nobody_holds_them():
    handle, calls, barrier = SharedHandles(), [], threading.Barrier(4)
    copies = [pickle.loads(pickle.dumps(handle)) for _ in range(4)]
    got = []

    def worker(c):
        barrier.wait()
        got.append(c.acquire("M", lambda: calls.append("M") or _Obj()))

    threads = [threading.Thread(target=worker, args=(c,)) for c in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["M"] and all(g is got[0] for g in got)
    copies.clear(), got.clear(), threads.clear()
    gc.collect()
    pickle.loads(pickle.dumps(handle)).acquire("M", lambda: calls.append("M") or _Obj())
    assert calls == ["M", "M"]  # nothing kept it: loaded again (no process-lifetime cache)


def test_a_pickled_handle_carries_nothing_loaded():
    handle = SharedHandles()
    handle.acquire("X", _Obj)
    again = pickle.loads(pickle.dumps(handle))
    assert again._held == [] and again._registry is None
