"""What the benchmark scripts share: each measurement in a fresh process, and that process's peak memory."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(queue, fn, args) -> None:
    if "fork" in mp.get_all_start_methods():  # a spawned child inherits "spawn": its DataLoader workers would
        mp.set_start_method("fork", force=True)  # re-import torch, which `python -m zsvc_pl` never does
    queue.put(fn(*args))


def in_process(fn, *args) -> dict:
    """``fn(*args)`` in a fresh spawned process (its own peak memory; it may start DataLoader workers). A
    measurement that crashes raises here instead of leaving the caller waiting forever."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the measurement process died (exit code {proc.exitcode})") from None
    proc.join()
    return result
