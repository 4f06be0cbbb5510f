"""Drivers that run the one per-device step: `shard_map` over a 1-D mesh, `pmap`, or plain `jit`."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

#: The name of the data-parallel axis the steps and the models' BatchNorm use.
AXIS = "data"
#: Values of `config.parallel`.
KINDS = ("shard_map", "pmap", "jit")

StepFn = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Driver:
    """A compiled train/eval step and the layout conversions around it.

    Attributes:
      kind: `"shard_map"`, `"pmap"` or `"jit"`.
      devices: the devices the batch is split over (one for `"jit"`).
      axis_name: `AXIS`, or `None` for `"jit"`: build the model with it.
      train_step: `(state, batch) -> (state, metrics)`, state donated.
      eval_step: `(state, batch) -> sums`.
      put_state: a single-copy state (host or device) -> the driver's layout.
      get_state: the driver's layout -> a single-copy state (for checkpoints and comparisons).
      put_batch: a host batch -> the driver's layout: the global batch of size `B`, or under
        `"shard_map"` with several processes this process's rows of it
        (`distributed.process_rows`).
      get_metrics: the step's metrics -> one copy (a tree of scalars).
    """

    kind: str
    devices: tuple[jax.Device, ...]
    axis_name: str | None
    train_step: StepFn
    eval_step: StepFn
    put_state: Callable[[Any], Any]
    get_state: Callable[[Any], Any]
    put_batch: Callable[[dict[str, np.ndarray]], Any]
    get_metrics: Callable[[Any], Any]

    @property
    def num_devices(self) -> int:
        """How many devices share each batch."""
        return len(self.devices)


def axis_name_for(kind: str) -> str | None:
    """The axis name the model and step need under driver `kind` (`None` for `"jit"`)."""
    _check_kind(kind)
    return None if kind == "jit" else AXIS


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"config.parallel must be one of {KINDS}, got {kind!r}")


def shard_map(f: StepFn, mesh: Mesh, in_specs: Any, out_specs: Any) -> StepFn:
    """`jax.shard_map` in per-device (pmap) semantics: `check_vma=False`.

    Deliberate: with `check_vma=True` (JAX's default) the replicated parameters are
    device-invariant, and JAX sums their gradient over devices itself (the transpose of the
    implicit `pvary`); the step's explicit `pmean` then divides nothing and the gradient comes
    out `n` times too large, silently. With it off, the same per-device function is correct
    under `shard_map` and `pmap` alike.
    """
    return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def _check_batch(batch: dict[str, np.ndarray], n: int) -> None:
    size = len(next(iter(batch.values())))
    if size % n:
        raise ValueError(f"the batch ({size}) must split evenly over the {n} local devices")


def make_driver(
    kind: str,
    train_step: StepFn,
    eval_step: StepFn,
    devices: Sequence[jax.Device] | None = None,
) -> Driver:
    """Wraps the per-device steps for one kind of data parallelism.

    Args:
      kind: `"shard_map"` (default in the configs): the state replicated on a 1-D `Mesh` named
        `AXIS`, the batch split along it, one `jit`; `"pmap"`: the state with a leading device
        axis; `"jit"`: one device, no named axis (a reference).
      train_step: `(state, batch, *, axis_name) -> (state, metrics)` (see `step.train_step`).
      eval_step: `(state, batch, *, axis_name) -> sums` (see `step.eval_step`).
      devices: the devices to use. Defaults to all local devices (the first one for `"jit"`).

    Returns:
      The driver.

    Raises:
      ValueError: an unknown `kind`.
    """
    _check_kind(kind)
    devices = tuple(jax.local_devices() if devices is None else devices)
    if kind == "jit":
        devices = devices[:1]
    axis_name = axis_name_for(kind)

    def bind(f: StepFn) -> StepFn:
        return lambda state, batch: f(state, batch, axis_name=axis_name)

    if kind == "pmap":
        return _pmap_driver(devices, bind(train_step), bind(eval_step))
    if kind == "jit":
        device = devices[0]
        return Driver(
            kind=kind,
            devices=devices,
            axis_name=None,
            train_step=jax.jit(bind(train_step), donate_argnums=0),
            eval_step=jax.jit(bind(eval_step)),
            put_state=lambda s: jax.device_put(s, device),
            get_state=lambda s: s,
            put_batch=lambda b: jax.device_put(b, device),
            get_metrics=lambda m: m,
        )
    mesh = Mesh(np.asarray(devices), (AXIS,))
    replicated = NamedSharding(mesh, P())
    split = NamedSharding(mesh, P(AXIS))

    def put_batch(batch: dict[str, np.ndarray]) -> Any:
        # This process's rows (all of them with one process) -> the global batch.
        _check_batch(batch, len(mesh.local_devices))
        return jax.make_array_from_process_local_data(split, batch)

    def replicate(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding == replicated:
            return x
        x = np.asarray(jax.device_get(x))  # the same value in every process
        return jax.make_array_from_callback(x.shape, replicated, lambda index: x[index])

    return Driver(
        kind=kind,
        devices=devices,
        axis_name=AXIS,
        train_step=jax.jit(
            shard_map(bind(train_step), mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P())),
            donate_argnums=0,
        ),
        eval_step=jax.jit(shard_map(bind(eval_step), mesh, in_specs=(P(), P(AXIS)), out_specs=P())),
        put_state=lambda s: jax.tree.map(replicate, s),
        get_state=lambda s: s,
        put_batch=put_batch,
        get_metrics=lambda m: m,
    )


def _pmap_driver(devices: tuple[jax.Device, ...], train_step: StepFn, eval_step: StepFn) -> Driver:
    """The `jax.pmap` driver: every array carries a leading axis of size `len(devices)`."""
    n = len(devices)
    sharding = NamedSharding(Mesh(np.asarray(devices), (AXIS,)), P(AXIS))

    def put_state(state: Any) -> Any:
        def replicate(x: Any) -> jax.Array:
            x = np.asarray(jax.device_get(x))
            return jax.device_put(np.broadcast_to(x[None], (n, *x.shape)), sharding)

        return jax.tree.map(replicate, state)

    def put_batch(batch: dict[str, np.ndarray]) -> Any:
        _check_batch(batch, n)
        local = {k: np.asarray(v).reshape(n, -1, *np.shape(v)[1:]) for k, v in batch.items()}
        return jax.device_put(local, sharding)

    def first(tree: Any) -> Any:
        return jax.tree.map(lambda x: x[0], tree)

    return Driver(
        kind="pmap",
        devices=devices,
        axis_name=AXIS,
        train_step=jax.pmap(train_step, AXIS, devices=devices, donate_argnums=0),
        eval_step=jax.pmap(eval_step, AXIS, devices=devices),
        put_state=put_state,
        get_state=first,
        put_batch=put_batch,
        get_metrics=first,
    )


def prefetch(items: Iterable[Any], size: int = 2) -> Iterator[Any]:
    """Yields `items`, produced up to `size` ahead in a background thread, in order.

    With `items` a generator of `put_batch(...)` results, host-side batch preparation and the
    host-to-device copy overlap the running step. Closing the generator stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            put(e)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Wait for the item in preparation: a process that exits while this thread is inside
        # JAX (a host-to-device copy) can abort in the interpreter's shutdown.
        producer.join()
