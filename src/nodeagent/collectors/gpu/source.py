"""The NVIDIA source: NVML start-up, GPU discovery, MIG layout and field reads.

With readers.py, events.py and the gpu/ backends, this is the only code of
the sampler that talks to the driver (and imports pynvml). It works on
whatever NvmlApi it is handed: the sampler hands it a watchdog-timed one.

NOT_SUPPORTED is remembered per GPU (and MIG instance) and per field, so an
unsupported call is not made every cycle; it is asked again when the GPU's
MIG mode changes (support differs between the two modes) and every
`reprobe_interval` seconds, so a field a driver update or a reset brings
back returns without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pynvml
import structlog

from nodeagent.collectors.gpu import readers as rd
from nodeagent.collectors.gpu.enrich import NO_INSTANCE, GpuProcess
from nodeagent.collectors.gpu.state import Value
from nodeagent.collectors.gpu.watchdog import TimedApi
from nodeagent.gpu.backend import GpuRef, MigRef, NvmlApi

log = structlog.get_logger("nodeagent.collectors.gpu.sampler")

UNSUPPORTED = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_NoPermission)
PROCESSES = "_processes"  # pseudo field: nvmlDeviceGetComputeRunningProcesses


class GpuLost(Exception):
    """The GPU is gone (GPU_IS_LOST), or answered nothing but errors this cycle
    (a GPU that fell off the bus answers NVML_ERROR_UNKNOWN before GPU_IS_LOST)."""

    def __init__(self, reason: str = "lost") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class DiscoveredGpu:
    """What the source keeps about one GPU between cycles."""

    index: int
    handle: Any  # None: lost when NVML enumerated it
    uuid: str = ""
    pci_bus_id: str = ""
    model: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    mig: list[MigRef] = field(default_factory=list)

    def ref(self) -> GpuRef:
        return GpuRef(self.index, self.uuid, self.handle, self.mig)


class NvidiaSource:
    def __init__(self, needed: frozenset[str], label_fields: tuple[str, ...], clock: Callable[[], float],
                 reprobe_interval: float, process_interval: float = 0.0) -> None:
        self.needed = needed
        self.label_fields = label_fields
        self.clock = clock
        self.reprobe_interval = reprobe_interval
        self.process_interval = process_interval
        self._processes: dict[int, tuple[float, list[GpuProcess]]] = {}
        self.readers = rd.readers_for(sorted(needed))
        self.mig_readers = [r for r in self.readers if r.mig]
        self._unsupported: dict[tuple[int, int | None], set[str]] = {}
        self._new_unsupported: dict[tuple[str, str], list[str]] = {}
        # (gpu, gi, field) logged as unsupported: a re-probe that finds it still
        # unsupported says nothing; one that finds it answering forgets it
        self._logged_unsupported: set[tuple[int, int | None, str]] = set()
        self._reprobe_at = clock() + reprobe_interval
        self._errors: dict[tuple[int, str], str] = {}
        # (gpu, gi) -> reader key -> (read at, values), for readers read every N seconds
        self._kept: dict[tuple[int, int | None], dict[str, tuple[float, dict[str, Value]]]] = {}

    # ---- start-up and discovery ------------------------------------------------------
    def system_labels(self, api: NvmlApi) -> dict[str, str]:
        labels: dict[str, str] = {}
        for name in self.label_fields:
            reader = rd.SYSTEM_LABELS.get(name)
            if reader is not None:
                try:
                    labels[name] = reader(api)
                except pynvml.NVMLError as e:
                    log.warning("gpu_label_field_unsupported", field=name, error=str(e))
        return labels

    def discover(self, api: NvmlApi, index: int, system_labels: dict[str, str]) -> DiscoveredGpu:
        handle = api.nvmlDeviceGetHandleByIndex(index)
        gpu = DiscoveredGpu(
            index,
            handle,
            uuid=rd.decode(api.nvmlDeviceGetUUID(handle)),
            pci_bus_id=rd.decode(api.nvmlDeviceGetPciInfo(handle).busId),
            model=rd.decode(api.nvmlDeviceGetName(handle)),
            labels=dict(system_labels),
        )
        for name in self.label_fields:
            reader = rd.DEVICE_LABELS.get(name)
            if reader is None:
                continue
            try:
                gpu.labels[name] = reader(api, handle)
            except pynvml.NVMLError as e:
                log.warning("gpu_label_field_unsupported", gpu=index, field=name, error=str(e))
        gpu.mig = self.mig_instances(api, handle, index)
        return gpu

    def mig_instances(self, api: NvmlApi, handle: Any, index: int) -> list[MigRef]:
        """The GPU instances of a MIG-enabled GPU ([] when MIG is off or not supported)."""
        try:
            current, _pending = api.nvmlDeviceGetMigMode(handle)
        except pynvml.NVMLError_GpuIsLost:
            raise
        except pynvml.NVMLError:
            return []
        if current != pynvml.NVML_DEVICE_MIG_ENABLE:
            return []
        out: list[MigRef] = []
        try:
            slots = api.nvmlDeviceGetMaxMigDeviceCount(handle)
        except pynvml.NVMLError as e:
            log.warning("gpu_mig_discovery_failed", gpu=index, error=str(e))
            return []
        for slot in range(slots):
            try:
                mig = api.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
                gi = int(api.nvmlDeviceGetGpuInstanceId(mig))
                name = rd.decode(api.nvmlDeviceGetName(mig))
            except pynvml.NVMLError_NotFound:
                continue  # an empty slot
            except pynvml.NVMLError_GpuIsLost:
                raise
            except pynvml.NVMLError as e:
                log.warning("gpu_mig_discovery_failed", gpu=index, slot=slot, error=str(e))
                continue
            out.append(MigRef(gi, mig_profile(name), mig))
        return out

    def discover_or_placeholder(self, timer: TimedApi, index: int, system_labels: dict[str, str]) -> DiscoveredGpu:
        """A GPU as discovered, or one without a handle (lost at start: tried again each cycle)."""
        timer.gpu = index
        try:
            return self.discover(cast(NvmlApi, timer), index, system_labels)
        except pynvml.NVMLError as e:
            log.error("gpu_discovery_failed", gpu=index, error=str(e))
            return DiscoveredGpu(index, None, labels=dict(system_labels))
        finally:
            timer.gpu = None

    def refresh_mig(self, timer: TimedApi, gpus: list[DiscoveredGpu]) -> None:
        """Pick up MIG layouts an administrator changed since the last look."""
        for gpu in gpus:
            if gpu.handle is None:
                continue
            timer.gpu = gpu.index
            try:
                mig = self.mig_instances(cast(NvmlApi, timer), gpu.handle, gpu.index)
            except pynvml.NVMLError:
                continue
            finally:
                timer.gpu = None
            if [(m.gi_id, m.profile) for m in mig] != [(m.gi_id, m.profile) for m in gpu.mig]:
                log.info("gpu_mig_layout_changed", gpu=gpu.index, instances=[m.profile for m in mig])
                gpu.mig = mig
                self.mig_changed(gpu.index)

    def mig_changed(self, gpu: int) -> None:
        """The GPU's MIG layout changed: what it supports may have too."""
        for key in [k for k in self._unsupported if k[0] == gpu]:
            del self._unsupported[key]
        for key in [k for k in self._kept if k[0] == gpu]:
            del self._kept[key]
        self._processes.pop(gpu, None)

    # ---- reads -------------------------------------------------------------------------
    def begin_cycle(self) -> None:
        """Forget NOT_SUPPORTED every reprobe_interval: those fields are asked again."""
        now = self.clock()
        if now >= self._reprobe_at:
            self._reprobe_at = now + self.reprobe_interval
            if self._unsupported:
                log.debug("gpu_unsupported_reprobe", fields=sum(len(s) for s in self._unsupported.values()))
            self._unsupported.clear()

    def end_cycle(self) -> None:
        for (name, error), gpus in sorted(self._new_unsupported.items()):
            log.warning("gpu_field_unsupported", field=name, gpus=gpus, error=error)
        self._new_unsupported.clear()

    def unsupported(self, gpu: int, gi: int | None) -> set[str]:
        return self._unsupported.setdefault((gpu, gi), set())

    def _mark_unsupported(self, gpu: int, gi: int | None, fields: tuple[str, ...], error: Exception) -> None:
        """Remember NOT_SUPPORTED; logged once per field at the end of the cycle,
        not again when a re-probe finds it still unsupported."""
        unsupported = self.unsupported(gpu, gi)
        where = str(gpu) if gi is None else f"{gpu}.{gi}"
        for name in fields:
            if name not in unsupported:
                unsupported.add(name)
                if (gpu, gi, name) not in self._logged_unsupported:
                    self._logged_unsupported.add((gpu, gi, name))
                    self._new_unsupported.setdefault((name, str(error)), []).append(where)

    def transient(self, gpu: int, key: str, error: BaseException) -> None:
        """A failed read, logged when its error changes."""
        text = f"{type(error).__name__}: {error}"
        if self._errors.get((gpu, key)) != text:
            log.warning("gpu_read_failed", gpu=gpu, reader=key, error=text)
            self._errors[(gpu, key)] = text

    def read(self, api: NvmlApi, gpu: int, gi: int | None, handle: Any) -> dict[str, Value]:
        """One cycle's values of a GPU (gi None) or of one of its MIG instances."""
        readers = self.readers if gi is None else self.mig_readers
        values: dict[str, Value] = {}
        unsupported = self.unsupported(gpu, gi)
        kept_values = self._kept.setdefault((gpu, gi), {})
        now = self.clock()
        answered = False
        failure: BaseException | None = None
        for reader in readers:
            wanted = tuple(f for f in reader.fields if f in self.needed and f not in unsupported)
            if not wanted:
                continue
            kept = kept_values.get(reader.key)
            if kept is not None and now - kept[0] < reader.every:
                values.update(kept[1])
                continue
            try:
                result = reader.read(api, handle, wanted)
            except pynvml.NVMLError_GpuIsLost:
                raise GpuLost() from None
            except UNSUPPORTED as e:
                self._mark_unsupported(gpu, gi, wanted, e)
                continue
            except Exception as e:  # any error, NVML's or the binding's, costs this read only
                self.transient(gpu, reader.key, e)
                failure = e
                continue
            answered = True
            self._errors.pop((gpu, reader.key), None)
            got = self._accept(gpu, gi, reader.key, wanted, result)
            if reader.every:
                kept_values[reader.key] = (now, got)
            values.update(got)
        if failure is not None and not answered and gi is None:
            raise GpuLost(f"every read failed: {type(failure).__name__}: {failure}")
        return values

    def _accept(self, gpu: int, gi: int | None, key: str, wanted: tuple[str, ...],
                result: rd.ReadResult) -> dict[str, Value]:
        got: dict[str, Value] = {}
        for name in wanted:
            value = result.get(name)
            if value is None:
                continue
            if isinstance(value, pynvml.NVMLError):
                if isinstance(value, pynvml.NVMLError_GpuIsLost):
                    raise GpuLost()
                if isinstance(value, UNSUPPORTED):
                    self._mark_unsupported(gpu, gi, (name,), value)
                else:
                    self.transient(gpu, f"{key}:{name}", value)
                continue
            got[name] = value
            self._logged_unsupported.discard((gpu, gi, name))
        return got

    def processes(self, api: NvmlApi, gpu: DiscoveredGpu) -> list[GpuProcess] | None:
        """The GPU's compute processes, read every process_interval seconds
        (the query walks every context on the GPU: slow on a loaded one);
        None when they cannot be read."""
        if PROCESSES in self.unsupported(gpu.index, None):
            return None
        now = self.clock()
        kept = self._processes.get(gpu.index)
        if kept is not None and now - kept[0] < self.process_interval:
            return kept[1]
        try:
            procs = api.nvmlDeviceGetComputeRunningProcesses(gpu.handle)
        except pynvml.NVMLError_GpuIsLost:
            raise GpuLost() from None
        except UNSUPPORTED as e:
            self._mark_unsupported(gpu.index, None, (PROCESSES,), e)
            return None
        except Exception as e:  # e.g. NVMLLibraryMismatchError: costs the process list only
            self.transient(gpu.index, PROCESSES, e)
            return None
        self._errors.pop((gpu.index, PROCESSES), None)
        self._logged_unsupported.discard((gpu.index, None, PROCESSES))
        out: list[GpuProcess] = []
        for p in procs:
            gi = getattr(p, "gpuInstanceId", None)
            out.append(GpuProcess(int(p.pid), int(p.usedGpuMemory or 0),
                                  None if gi is None or gi == NO_INSTANCE else int(gi)))
        self._processes[gpu.index] = (now, out)
        return out


def mig_profile(device_name: str) -> str:
    """GPU_I_PROFILE from a MIG device's name, as DCGM forms it.

    "NVIDIA H100 80GB HBM3 MIG 1g.10gb" -> "1g.10gb"; a compute-instance
    split of a GPU instance is named like "MIG 1c.3g.40gb", which DCGM
    reports as the GPU instance's profile "3g.40gb"."""
    if "MIG " not in device_name:
        return ""
    profile = device_name.split("MIG ", 1)[1].strip()
    parts = profile.split(".")
    if len(parts) == 3 and parts[0].endswith("c"):
        profile = ".".join(parts[1:])
    return profile
