"""A fake DCGM for the fake NVML: stand-ins for the DCGM Python bindings
nodeagent uses (DcgmReader, dcgm_fields, dcgm_agent, dcgm_structs), with
their names and return shapes, over a FakeNvml's described values.

What it follows (NVIDIA/DCGM, testing/python3 unless named otherwise):
- DcgmReader.py: a reader watches DCGM's group of all GPUs, or a group of the
  `entities=` it is given (c_dcgmGroupEntityPair_t); m_gpuIdToUUId holds only
  the group's GPU members (SetupGpuIdUUIdMappings uses GetGpuIds);
  GetLatestGpuValuesAsFieldIdDict reads samples.GetLatest and
  GetLatestEntityValuesAsFieldIdDict (DCGM 3.3.1 and newer) samples.GetLatest_v2
  (DcgmGroup.py); both leave out blank values when ignoreBlank, and Init
  swallows a refused connection, leaving m_dcgmHandle None.
- dcgm_field_helpers.py: a value has .value and .isBlank; a bad status gives
  value None, DCGM's "not supported" sentinels (dcgmvalue.py) are blank too.
- dcgm_agent.dcgmGetGpuInstanceHierarchy and dcgm_structs.c_dcgmMigHierarchy_v2,
  filled as dcgmlib/src/DcgmCacheManager.cpp PopulateMigHierarchy does: per
  MIG-enabled GPU, each GPU instance (DCGM_FE_GPU_I, parent the GPU) followed
  by its compute instances (DCGM_FE_GPU_CI, parent the GPU instance). DCGM's
  ids are its own: gpuId * max GPU instances + enumeration index (by profile,
  smallest first), not NVML's GPU-instance ids, which are in info.nvmlInstanceId.
- A GPU-level field (PCIe, NVLink bytes) read on a GPU instance answers the
  parent GPU's value (DcgmCacheManager::SetPracticalEntityInfo).

Each GPU instance has one compute instance, the usual layout. DCGM GPU ids
are the NVML indexes plus `first_gpu_id`. Tests drive what DCGM does beyond
the description: `blanks` ((gpu, gi or None, field) DCGM holds no value for),
`hierarchy_error` (raised by dcgmGetGpuInstanceHierarchy).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from nodeagent.catalogue.gpu import PROF_FIELDS
from nodeagent.gpu.dcgm import (
    DCGM_FE_GPU,
    DCGM_FE_GPU_I,
    DCGM_FP64_BLANK,
    DCGM_INT64_BLANK,
    INSTANCE_FIELDS,
    INT_FIELDS,
    PROF_FIELD_IDS,
    DcgmBindings,
)
from nodeagent.gpu.fake_device import _MAX_MIG_DEVICES

if TYPE_CHECKING:
    from nodeagent.gpu.fake import FakeNvml

DCGM_FE_GPU_CI = 5
DCGM_ST_BADPARAM = -2
DCGM_ST_NOT_SUPPORTED = -6
DCGM_ST_CONNECTION_NOT_VALID = -21
_MAX_HIERARCHY_INFO = 32 * 14  # DCGM_MAX_NUM_DEVICES * DCGM_MAX_TOTAL_INSTANCES
_NAME_BY_ID = {fid: name for name, fid in PROF_FIELD_IDS.items()}


class DCGMError(Exception):
    """dcgm_structs.DCGMError: `value` is the DCGM_ST_* code."""

    def __init__(self, value: int) -> None:
        super().__init__(f"DCGM error {value}")
        self.value = value


class DCGMError_NotSupported(DCGMError):
    def __init__(self) -> None:
        super().__init__(DCGM_ST_NOT_SUPPORTED)


class _Struct(ctypes.Structure):
    """dcgm_structs._DcgmStructure: char arrays read back as str."""

    def __getattribute__(self, key: str) -> Any:
        value = super().__getattribute__(key)
        return value.decode() if isinstance(value, bytes) else value


class c_dcgmGroupEntityPair_t(_Struct):
    _fields_ = [("entityGroupId", ctypes.c_uint32), ("entityId", ctypes.c_uint32)]


class c_dcgmMigEntityInfo_t(_Struct):
    _fields_ = [
        ("gpuUuid", ctypes.c_char * 128),
        ("nvmlGpuIndex", ctypes.c_uint),
        ("nvmlInstanceId", ctypes.c_uint),
        ("nvmlComputeInstanceId", ctypes.c_uint),
        ("nvmlMigProfileId", ctypes.c_uint),
        ("nvmlProfileSlices", ctypes.c_uint),
    ]


class c_dcgmMigHierarchyInfo_v2(_Struct):
    _fields_ = [
        ("entity", c_dcgmGroupEntityPair_t),
        ("parent", c_dcgmGroupEntityPair_t),
        ("info", c_dcgmMigEntityInfo_t),
    ]


class c_dcgmMigHierarchy_v2(_Struct):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("count", ctypes.c_uint),
        ("entityList", c_dcgmMigHierarchyInfo_v2 * _MAX_HIERARCHY_INFO),
    ]


@dataclass
class FieldValue:
    """dcgm_field_helpers.DcgmFieldValue."""

    fieldId: int
    value: Any
    isBlank: bool
    ts: int = 0


@dataclass
class _Collection:
    """DcgmFieldValueCollection / DcgmFieldValueEntityCollection: .values of time series."""

    values: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Instance:
    gpu: int  # NVML index
    gi: int  # NVML GPU-instance id
    entity_id: int
    ci_entity_id: int
    slices: int


def _slices(profile: str) -> int:
    head = profile.split("g.", 1)[0]
    return int(head) if head.isdigit() else 1


class FakeDcgm:
    """One host engine over a FakeNvml (see the module docstring)."""

    def __init__(self, fake: FakeNvml, first_gpu_id: int = 0, entity_dicts: bool = True) -> None:
        self.fake = fake
        self.first_gpu_id = first_gpu_id
        # DcgmReader.GetLatestEntityValuesAsFieldIdDict exists (DCGM >= 3.3.1)
        self.entity_dicts = entity_dicts
        self.blanks: set[tuple[int, int | None, str]] = set()
        self.hierarchy_error: BaseException | None = None
        self.refuse = False  # nv-hostengine not running
        self._handles = 0
        self.live: set[int] = set()

    def bindings(self) -> DcgmBindings:
        reader_cls = FakeDcgmReader if self.entity_dicts else LegacyFakeDcgmReader
        fields = SimpleNamespace(DCGM_FE_GPU=DCGM_FE_GPU, DCGM_FE_GPU_I=DCGM_FE_GPU_I,
                                 DCGM_FE_GPU_CI=DCGM_FE_GPU_CI, **PROF_FIELD_IDS)
        return DcgmBindings(
            reader=SimpleNamespace(DcgmReader=lambda **kw: reader_cls(self, **kw)),
            fields=fields,
            agent=SimpleNamespace(dcgmGetGpuInstanceHierarchy=self.dcgmGetGpuInstanceHierarchy),
            structs=SimpleNamespace(c_dcgmGroupEntityPair_t=c_dcgmGroupEntityPair_t, DCGMError=DCGMError,
                                    DCGMError_NotSupported=DCGMError_NotSupported),
        )

    def _count(self, call: str) -> None:
        with self.fake._lock:
            self.fake.calls[(call, None)] += 1
            self.fake._apply_events()

    # ---- the host engine's view ------------------------------------------------------
    def connect(self) -> int:
        self._count("dcgmConnect")
        if self.refuse:
            raise DCGMError(DCGM_ST_CONNECTION_NOT_VALID)
        self._handles += 1
        self.live.add(self._handles)
        return self._handles

    def gpu_ids(self) -> dict[int, str]:
        return {self.first_gpu_id + g.index: g.uuid for g in self.fake.description.gpus}

    def instances(self) -> list[_Instance]:
        """GPU instances of the MIG-enabled GPUs, in DCGM's order and numbering."""
        out: list[_Instance] = []
        for gpu in self.fake.description.gpus:
            if not self.fake._mig_enabled[gpu.index]:
                continue
            gpu_id = self.first_gpu_id + gpu.index
            ordered = sorted(gpu.mig, key=lambda m: (_slices(m.profile), m.gi_id))
            for i, m in enumerate(ordered):
                base = gpu_id * _MAX_MIG_DEVICES
                out.append(_Instance(gpu.index, m.gi_id, base + i, base + i, _slices(m.profile)))
        return out

    def dcgmGetGpuInstanceHierarchy(self, handle: Any) -> c_dcgmMigHierarchy_v2:
        self._count("dcgmGetGpuInstanceHierarchy")
        if handle not in self.live:
            raise DCGMError(DCGM_ST_CONNECTION_NOT_VALID)
        if self.hierarchy_error is not None:
            raise self.hierarchy_error
        hierarchy = c_dcgmMigHierarchy_v2()
        gpus = self.fake.description.gpus
        for inst in self.instances():
            gpu_id = self.first_gpu_id + inst.gpu
            for group, entity, parent_group, parent, ci in (
                (DCGM_FE_GPU_I, inst.entity_id, DCGM_FE_GPU, gpu_id, 0xFFFFFFFF),
                (DCGM_FE_GPU_CI, inst.ci_entity_id, DCGM_FE_GPU_I, inst.entity_id, 0),
            ):
                item = hierarchy.entityList[hierarchy.count]
                item.entity.entityGroupId, item.entity.entityId = group, entity
                item.parent.entityGroupId, item.parent.entityId = parent_group, parent
                item.info.gpuUuid = gpus[inst.gpu].uuid.encode()
                item.info.nvmlGpuIndex = inst.gpu
                item.info.nvmlInstanceId = inst.gi
                item.info.nvmlComputeInstanceId = ci
                item.info.nvmlProfileSlices = inst.slices
                hierarchy.count += 1
        return hierarchy

    def exists(self, group: int, entity: int) -> bool:
        if group == DCGM_FE_GPU:
            return entity in self.gpu_ids()
        return group == DCGM_FE_GPU_I and any(i.entity_id == entity for i in self.instances())

    def latest(self, group: int, entity: int, field_ids: list[int]) -> dict[int, list[FieldValue]]:
        """The latest value of each field on one entity, as DCGM caches it."""
        gpus = self.fake.description.gpus
        if group == DCGM_FE_GPU:
            gpu, gi = gpus[entity - self.first_gpu_id], None
        else:
            inst = next((i for i in self.instances() if i.entity_id == entity), None)
            if inst is None:  # gone with a MIG change: DCGM answers a bad status
                return {fid: [FieldValue(fid, None, True)] for fid in field_ids}
            gpu, gi = gpus[inst.gpu], inst.gi
        unsupported = gpu.model.unsupported | gpu.unsupported
        out: dict[int, list[FieldValue]] = {}
        for fid in field_ids:
            name = _NAME_BY_ID.get(fid)
            if name is None or name not in PROF_FIELDS:
                continue
            # a GPU-level field watched on an instance is the parent GPU's
            own = gi if name in INSTANCE_FIELDS else None
            described = name in gpu.fields or name in gpu.model.fields
            if gpu.index in self.fake._lost or name in unsupported or not described \
                    or (gpu.index, gi, name) in self.blanks:
                sentinel = DCGM_INT64_BLANK + 2 if name in INT_FIELDS else DCGM_FP64_BLANK + 2.0
                out[fid] = [FieldValue(fid, sentinel, True)]  # DCGM_*_NOT_SUPPORTED
                continue
            raw = self.fake._value(gpu, name, own)
            out[fid] = [FieldValue(fid, int(raw) if name in INT_FIELDS else float(raw), False)]
        return out


class _Handle:
    """pydcgm.DcgmHandle: .handle, and Shutdown() disconnects."""

    def __init__(self, dcgm: FakeDcgm, handle: int) -> None:
        self.dcgm = dcgm
        self.handle: int | None = handle

    def Shutdown(self) -> None:
        self.dcgm.live.discard(self.handle or 0)
        self.handle = None


class _Samples:
    """DcgmGroup.samples of a fake group."""

    def __init__(self, dcgm: FakeDcgm, members: list[tuple[int, int]]) -> None:
        self.dcgm = dcgm
        self.members = members

    def GetLatest(self, fieldGroup: list[int]) -> _Collection:
        """values[gpuId][fieldId]: the group's GPUs only."""
        self.dcgm._count("dcgmGetLatestValues")
        return _Collection({e: self.dcgm.latest(g, e, fieldGroup) for g, e in self.members if g == DCGM_FE_GPU})

    def GetLatest_v2(self, fieldGroup: list[int]) -> _Collection:
        """values[entityGroupId][entityId][fieldId]."""
        self.dcgm._count("dcgmGetLatestValues_v2")
        out: dict[int, dict[int, Any]] = {}
        for g, e in self.members:
            out.setdefault(g, {})[e] = self.dcgm.latest(g, e, fieldGroup)
        return _Collection(out)


class LegacyFakeDcgmReader:
    """DcgmReader as in DCGM 2.2.6 to 3.3.0 (no entity-value dictionaries)."""

    def __init__(self, dcgm: FakeDcgm, hostname: str | None = "localhost", fieldIds: list[int] | None = None,
                 updateFrequency: int = 10_000_000, maxKeepAge: float = 3600.0,
                 ignoreList: list[int] | None = None, fieldGroupName: str = "dcgm_fieldgroupData",
                 gpuIds: list[int] | None = None, entities: list[Any] | None = None,
                 fieldIntervalMap: dict[int, list[int]] | None = None, ignoreBlank: bool = True) -> None:
        self.dcgm = dcgm
        self.m_dcgmHostName = hostname
        self.m_fieldIds = list(fieldIds or PROF_FIELD_IDS.values())
        self.m_requestedEntities = entities
        self.m_ignoreBlank = ignoreBlank
        self.m_dcgmHandle: Any = None
        self.m_dcgmGroup: Any = None
        self.m_fieldGroup: list[int] | None = None
        self.m_gpuIdToUUId: dict[int, str] = {}
        self.m_lock = threading.Lock()

    def Init(self, libpath: str | None = None) -> None:
        with self.m_lock:
            try:
                self.Reconnect()
            except DCGMError as e:
                if e.value != DCGM_ST_CONNECTION_NOT_VALID:
                    raise
                self.SetDisconnected()  # "Can't connect to nv-hostengine. Is it down?"

    def Reconnect(self) -> None:
        if self.m_dcgmHandle is not None:
            return
        handle = self.dcgm.connect()
        if self.m_requestedEntities:
            members = [(int(p.entityGroupId), int(p.entityId)) for p in self.m_requestedEntities]
            for g, e in members:
                if not self.dcgm.exists(g, e):  # dcgmGroupAddEntity fails
                    self.dcgm.live.discard(handle)
                    raise DCGMError(DCGM_ST_BADPARAM)
        else:
            members = [(DCGM_FE_GPU, gid) for gid in self.dcgm.gpu_ids()]
        self.m_dcgmHandle = _Handle(self.dcgm, handle)
        self.m_dcgmGroup = SimpleNamespace(samples=_Samples(self.dcgm, members))
        self.m_fieldGroup = self.m_fieldIds
        uuids = self.dcgm.gpu_ids()
        self.m_gpuIdToUUId = {e: uuids[e] for g, e in members if g == DCGM_FE_GPU}

    def SetDisconnected(self) -> None:
        # drops the references only: the connection stays until the handle is shut down
        self.m_dcgmHandle = self.m_dcgmGroup = None

    def Shutdown(self) -> None:
        with self.m_lock:
            self.SetDisconnected()

    def GetLatestGpuValuesAsFieldIdDict(self) -> dict[int, dict[int, Any]]:
        with self.m_lock:
            try:
                self.Reconnect()
                fvs = self.m_dcgmGroup.samples.GetLatest(self.m_fieldGroup).values
            except DCGMError as e:
                return self._disconnected(e)
            return {gpu: self._kept(fields) for gpu, fields in fvs.items()}

    def _disconnected(self, e: DCGMError) -> dict[int, Any]:
        """DcgmReader's Get* calls log a lost connection and answer what they have: nothing."""
        if e.value != DCGM_ST_CONNECTION_NOT_VALID:
            raise e
        self.SetDisconnected()
        return {}

    def _kept(self, fields: dict[int, list[FieldValue]]) -> dict[int, Any]:
        return {fid: series[-1].value for fid, series in fields.items()
                if not (series[-1].isBlank and self.m_ignoreBlank)}


class FakeDcgmReader(LegacyFakeDcgmReader):
    """DcgmReader as in DCGM 3.3.1 and newer."""

    def GetLatestEntityValuesAsFieldIdDict(self) -> dict[int, dict[int, dict[int, Any]]]:
        with self.m_lock:
            try:
                self.Reconnect()
                egfvs = self.m_dcgmGroup.samples.GetLatest_v2(self.m_fieldGroup).values
            except DCGMError as e:
                return self._disconnected(e)
            return {g: {e: self._kept(fields) for e, fields in entities.items()} for g, entities in egfvs.items()}
