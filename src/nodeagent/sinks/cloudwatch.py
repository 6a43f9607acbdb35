"""The CloudWatch sink: families -> datums -> spool -> PutMetricData.

publish() maps the role's families, and the per-node summaries derived from
them (host: summary.py; GPU: gpu_summary.py; network and Lustre I/O:
io_summary.py), to datums through the catalogue and writes them to the on-disk
spool: once publish() returns, the datums survive a kill -9. A background thread sends
from the oldest spooled datum on, packing each request within CloudWatch's
limits, and deletes what CloudWatch accepted. Requests are formed once: one
that failed is sent again as it was, never merged with what was spooled since.

Retries inside one call are botocore's (`standard` or `adaptive` mode,
`max_attempts`), except after a request that was sent and got no answer (read
timeout, connection closed); this module decides what happens after botocore
gave up:

* unreachable, throttled, 5xx, expired or missing credentials, anything
  unknown: the data stays in the spool; the next attempt comes after a delay
  that doubles from 1 s to `retry_max_delay` (flush() tries at once);
* sent but no answer: CloudWatch may have stored the request. Resending it
  blindly while CloudWatch stays dark stores a copy per attempt whenever those
  requests do arrive (a slow service; a black-holed network whose
  retransmissions get through once it heals). So botocore does not retry it,
  and before any data goes out again the sink asks CloudWatch a question that
  stores nothing (an unsigned ListMetrics: it needs no permission, and the
  error it gets is an answer). Once one comes, the same request is sent again:
  a dark outage costs at most one request's datums twice (delivery is
  at-least-once), however long it lasts.
  A sink that starts with a backlog asks first too: the process before it may
  have been killed with a request in flight;
* CloudWatch refuses the request's content (InvalidParameterValue, ...): the
  request is split in halves until the datums it refuses are isolated; those
  are dropped and counted (reason rejected), the rest is sent;
* a body over the size limit (the estimate in mapping.pack is an upper bound,
  this is the guard behind it): split in halves, never sent.

Requests per flush are ceil(datums / 1000) unless the 1 MB limit needs more;
botocore gzips bodies of `compress_min_bytes` and more (botocore >= 1.31).
While replaying a backlog, datums of several publishes share a request: those
spooled when the round was read (up to 5,000 datums); later ones wait for the
next round.
During a config reload the old and new sink share the spool for a moment;
a batch both send is sent twice (at-least-once), never lost.

Credentials come only from botocore's default chain (instance profile on
ParallelCluster nodes); this module never reads, stores or logs them.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import structlog

from nodeagent import __version__
from nodeagent.catalogue import sinks as cat
from nodeagent.catalogue import summaries as cat_sum
from nodeagent.catalogue.spec import Catalogue, MetricSpec
from nodeagent.host import Host
from nodeagent.model import MetricFamily
from nodeagent.sinks.discovery import Identity, discover
from nodeagent.sinks.gpu_summary import GpuSummary
from nodeagent.sinks.io_summary import IoSummary
from nodeagent.sinks.mapping import ROLLUP_LABEL, CloudWatchMapper, Datum, datum_problem, pack
from nodeagent.sinks.settings import CloudWatchSettings
from nodeagent.sinks.settings import namespace_problem as namespace_problem  # checks/head.py imports it from here
from nodeagent.sinks.spool import Spool, close_spool, open_spool
from nodeagent.sinks.summary import HostSummary

log = structlog.get_logger(__name__)

# Error codes that mean "this request's content is refused": retrying as is cannot help.
INVALID_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterCombination",
        "InvalidParameterCombinationException",
        "MissingParameter",
        "MissingRequiredParameter",
        "MissingRequiredParameterException",
        "ValidationError",
        "ValidationException",
        "SerializationException",
    }
)
TOO_LARGE_CODES = frozenset({"RequestEntityTooLarge", "RequestEntityTooLargeException", "413"})
_MAX_ERROR_CODES = 32
_CODE_CHARS = re.compile(r"[^A-Za-z0-9_.]")
# datums read from the spool per round (several requests)
_ROUND_DATUMS = 5000
_DROP_LOG_EVERY = 600.0
# the reachability probe lists this one metric of the sink's namespace: a short answer
_PROBE_METRIC = "SPOOL_OLDEST_AGE"


class RequestTooLarge(Exception):
    """Raised from the before-call hook: the serialized body is over the limit."""

    def __init__(self, size: int) -> None:
        super().__init__(f"request body of {size} bytes is over the limit")
        self.size = size


# _UNANSWERED: a transient failure after which CloudWatch may have stored the request
_OK, _TRANSIENT, _UNANSWERED, _INVALID, _SPLIT = "ok", "transient", "unanswered", "invalid", "split"


@dataclass
class _Request:
    """A PutMetricData request formed from the spool: its datums and their
    spool positions. Kept until CloudWatch accepted (or refused) all of it."""

    datums: list[Datum]
    positions: list[tuple[int, int]]


def no_retry_without_answer(caught_exception: Exception | None = None, **_: Any) -> bool | None:
    """botocore needs-retry hook, registered ahead of botocore's own retry
    handler: False (no retry) when the request was sent and no answer came
    (HTTPClientError: read timeout, connection closed), because CloudWatch may
    have stored it; None leaves every other case to botocore (connection
    refused or timed out, throttling, 5xx)."""
    from botocore.exceptions import HTTPClientError

    return False if isinstance(caught_exception, HTTPClientError) else None


def default_spool_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "spool")


def body_size(body: Any) -> int:
    """Bytes of a request body before compression, whatever the protocol. At
    before-call the JSON and CBOR protocols' body is bytes, the query
    protocol's (older botocore) still a dict of form fields that botocore
    URL-encodes when it prepares the request."""
    if isinstance(body, dict):
        body = urlencode(body, doseq=True)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return 0


def botocore_config(s: CloudWatchSettings) -> Any:
    """botocore's Config: retries in botocore's standard or adaptive mode, timeouts,
    gzip request compression (botocore >= 1.31; older botocore sends uncompressed)."""
    from botocore.config import Config as BotoConfig

    common: dict[str, Any] = {
        # total_max_attempts counts the first attempt (botocore's client-config
        # `max_attempts` would count retries only)
        "retries": {"mode": s.retry_mode, "total_max_attempts": s.max_attempts},
        "connect_timeout": s.connect_timeout,
        "read_timeout": s.read_timeout,
        "user_agent_extra": f"nodeagent/{__version__}",
    }
    try:
        return BotoConfig(
            **common,
            disable_request_compression=not s.compress,
            request_min_compression_size_bytes=s.compress_min_bytes,
        )
    except TypeError:
        if s.compress:
            log.warning("cloudwatch_compression_unsupported", reason="botocore older than 1.31")
        return BotoConfig(**common)


class CloudWatchSink:
    """Publishes a role's families to CloudWatch without losing them."""

    def __init__(
        self,
        settings: CloudWatchSettings,
        role: str,
        *,
        host: Host,
        spool_dir: str,
        cfnconfig_path: str,
        hostname: str | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.host = host
        self._cfnconfig_path = cfnconfig_path
        self.identity = self._discover(need_instance_id=True)
        instance = self.identity.instance_id or hostname or host.hostname()
        self.instance = instance
        # summaries derived from the role's families before mapping (CloudWatch only)
        self.summary = HostSummary(role, instance, settings.disk_mountpoints)
        self.gpu_summary = GpuSummary(role, instance)
        self.io_summary = IoSummary(role, instance)
        self.mapper = CloudWatchMapper(
            role, settings.high_resolution, ROLLUP_LABEL if settings.role_rollup else None, catalogue
        )
        self.spool: Spool = open_spool(spool_dir, settings.spool_max_bytes, settings.spool_fsync)
        self._stats_lock = threading.Lock()
        self._published = 0
        self._sent = 0
        self._requests = 0
        self._bytes: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._last_success = 0.0
        self._up = True
        self._drop_logged: dict[str, float] = {}
        self._client: Any = None
        self._probe_client: Any = None
        self._namespace: str | None = None
        self._protocol = "query"  # the largest encoding until the client says otherwise
        self._call_sizes: list[int] = [0, 0]  # last call: body before compression, as sent
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_now = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._retry_at = 0.0
        self._delay = 0.0
        self._failing_since: float | None = None
        self._held: deque[_Request] = deque()  # formed, not yet accepted; sent again as they are
        self._round_end: tuple[int, int] | None = None  # last spool position of the held round
        # ask CloudWatch before sending data (see the module doc): a backlog at
        # start may hold the request a killed process had in flight
        self._unanswered = not self.spool.empty()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-sender", daemon=True)
        self._thread.start()
        log.info(
            "cloudwatch_sink_started",
            role=role,
            region=self.identity.region,
            cluster=self.identity.cluster_name,
            instance=instance,
            sources=self.identity.sources,
            spool=str(self.spool.directory),
            spooled=self.spool.datums,
        )

    # ---- discovery and client ---------------------------------------------------
    def _discover(self, need_instance_id: bool) -> Identity:
        s = self.settings
        return discover(
            host=self.host,
            cfnconfig_path=self._cfnconfig_path,
            region=s.region,
            cluster_name=s.cluster_name,
            imds_endpoint=s.imds_endpoint if s.imds else None,
            imds_timeout=s.imds_timeout,
            need_instance_id=need_instance_id,
        )

    @property
    def namespace(self) -> str | None:
        if self.settings.namespace:
            return self.settings.namespace
        if self.identity.cluster_name:
            return f"ParallelCluster/{self.identity.cluster_name}"
        return None

    def _ensure_client(self) -> bool:
        if self._client is not None:
            return True
        if self.namespace is None or self.identity.region is None:
            # cfnconfig may appear later in a node's bootstrap; IMDS may have been slow
            self.identity = self._merge_identity(self._discover(need_instance_id=False))
        namespace = self.namespace
        if namespace is None:
            self._note_failure("NoClusterName", "set cloudwatch.cluster_name or cloudwatch.namespace")
            return False
        problem = namespace_problem(namespace)
        if problem:
            # every datum would be refused; keep them spooled until the config is fixed
            self._note_failure("InvalidNamespace", problem)
            return False
        import boto3
        from botocore.exceptions import BotoCoreError

        s = self.settings
        config = botocore_config(s)
        try:
            client = boto3.session.Session().client(
                "cloudwatch", region_name=self.identity.region, endpoint_url=s.endpoint_url, config=config
            )
        except BotoCoreError as e:  # NoRegionError and friends
            self._note_failure(type(e).__name__, str(e))
            return False
        client.meta.events.register("before-call.cloudwatch.PutMetricData", self._before_call)
        client.meta.events.register("before-send.cloudwatch.PutMetricData", self._before_send)
        client.meta.events.register_first("needs-retry.cloudwatch.PutMetricData", no_retry_without_answer)
        self._client = client
        self._namespace = namespace
        model = client.meta.service_model
        self._protocol = str(getattr(model, "resolved_protocol", None) or model.protocol)
        log.info("cloudwatch_client_ready", region=client.meta.region_name, namespace=namespace)
        return True

    def _merge_identity(self, found: Identity) -> Identity:
        ident = self.identity
        merged = Identity(
            region=ident.region or found.region,
            cluster_name=ident.cluster_name or found.cluster_name,
            instance_id=ident.instance_id,
            sources={**found.sources, **ident.sources},
        )
        return merged

    def _before_call(self, params: dict[str, Any], **_: Any) -> None:
        size = body_size(params.get("body", b""))
        self._call_sizes[0] = size
        if size > self.settings.max_request_bytes:
            raise RequestTooLarge(size)

    def _before_send(self, request: Any, **_: Any) -> None:
        self._call_sizes[1] = body_size(request.body)

    # ---- publishing (caller's thread) ----------------------------------------------
    def publish(self, families: list[MetricFamily], timestamp: float) -> None:
        derived = [
            *self.summary.derive(families),
            *self.gpu_summary.derive(families),
            *self.io_summary.derive(families, timestamp),
            self._spool_age_family(timestamp),
        ]
        datums, dropped = self.mapper.map([*families, *derived], timestamp)
        evicted = self.spool.append(datums) if datums else 0
        with self._stats_lock:
            self._published += len(datums)
            self._dropped.update(dropped)
            if evicted:
                self._dropped["spool_full"] += evicted
        for reason, n in dropped.items():
            self._log_drop(reason, n)
        if evicted:
            self._log_drop("spool_full", evicted)
        self._wake.set()

    def _spool_age_family(self, timestamp: float) -> MetricFamily:
        """The backlog as it stands at this publish, sent with it: after an
        outage, CloudWatch learns how long this node's data waited."""
        oldest = self.spool.oldest_timestamp()
        fam = cat_sum.SPOOL_OLDEST_AGE.family()
        fam.add((self.role, self.instance), max(0.0, timestamp - oldest) if oldest is not None else 0.0)
        return fam

    def _log_drop(self, reason: str, count: int) -> None:
        now = time.monotonic()
        last = self._drop_logged.get(reason)
        if last is None or now - last >= _DROP_LOG_EVERY:
            self._drop_logged[reason] = now
            with self._stats_lock:
                total = self._dropped[reason]
            log.warning("cloudwatch_datums_dropped", reason=reason, count=count, total=total)

    def _count_drop(self, reason: str, count: int) -> None:
        if count <= 0:
            return
        with self._stats_lock:
            self._dropped[reason] += count
        self._log_drop(reason, count)

    # ---- sending (background thread) ----------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as e:  # the sender never dies; the data stays in the spool
                log.error("cloudwatch_sender_error", error=f"{type(e).__name__}: {e}")
                self._schedule_retry()
                self._idle.set()
                self._stop.wait(1.0)

    def _step(self) -> None:
        if self.spool.empty() and not self._held:
            self._idle.set()
            self._wake.wait(5.0)
            self._wake.clear()
            return
        now = time.monotonic()
        if now < self._retry_at and not self._flush_now.is_set():
            self._idle.set()
            self._wake.wait(min(self._retry_at - now, 5.0))
            self._wake.clear()
            return
        self._idle.clear()
        self._flush_now.clear()
        if not self._ensure_client() or (self._unanswered and not self._probe()):
            self._schedule_retry()
            return
        if self._send_round():
            if self._failing_since is not None:
                log.info(
                    "cloudwatch_recovered",
                    outage_seconds=round(time.monotonic() - self._failing_since, 1),
                    spooled=self.spool.datums,
                )
            self._failing_since = None
            self._delay = 0.0
            self._retry_at = 0.0
        else:
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._delay = min(max(1.0, self._delay * 2), self.settings.retry_max_delay)
        self._retry_at = time.monotonic() + self._delay

    def _probe(self) -> bool:
        """Whether CloudWatch answers, asked with a call that stores nothing:
        ListMetrics, unsigned, so that it needs no permission (no AccessDenied
        in CloudTrail) and no credentials. Any answer counts, the error about
        the missing signature included: requests get through again, and
        their answers come back."""
        from botocore.exceptions import ClientError

        try:
            if self._probe_client is None:
                self._probe_client = self._make_probe_client()
            self._probe_client.list_metrics(Namespace=self._namespace, MetricName=_PROBE_METRIC)
        except ClientError:
            pass
        except Exception as e:
            self._note_failure(type(e).__name__, str(e)[:300])
            return False
        self._unanswered = False
        return True

    def _make_probe_client(self) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config as BotoConfig

        config = botocore_config(self.settings).merge(BotoConfig(signature_version=UNSIGNED))
        client = boto3.session.Session().client(
            "cloudwatch",
            region_name=self._client.meta.region_name,
            endpoint_url=self.settings.endpoint_url,
            config=config,
        )
        client.meta.events.register_first("needs-retry.cloudwatch.ListMetrics", no_retry_without_answer)
        return client

    def _send_round(self) -> bool:
        """Send the held requests, after reading a round from the spool when
        none is held; False on a failure to retry later (what is not done stays
        held, to be sent again as it is)."""
        if not self._held:
            self._form_round()
        while self._held:
            if self._stop.is_set():
                return False  # closing: the rest stays spooled for the next start
            request = self._held[0]
            done = self._deliver(request.datums, request.positions)
            if done < len(request.datums):
                # a refused datum split the request and a part failed: what was
                # done (sent or dropped) is not sent again
                del request.datums[:done], request.positions[:done]
                return False
            self._held.popleft()
        if self._round_end is not None:
            self.spool.ack(self._round_end)  # includes datums dropped as too old at the end
            self._round_end = None
        self._count_drop("spool_full", self.spool.release_inflight())
        return True

    def _form_round(self) -> None:
        """Read up to a round of spooled datums and pack them into requests,
        held until each is done; too old or too new datums are dropped here."""
        s = self.settings
        datums, positions, corrupt = self.spool.peek(_ROUND_DATUMS)
        self._count_drop("spool_corrupt", corrupt)
        if not datums:
            return
        now = time.time()
        keep: list[Datum] = []
        keep_pos: list[tuple[int, int]] = []
        late: Counter[str] = Counter()
        for d, p in zip(datums, positions, strict=True):
            problem = datum_problem(d, now)
            if problem:
                late[problem] += 1
            else:
                keep.append(d)
                keep_pos.append(p)
        for reason, n in late.items():
            self._count_drop(reason, n)
        self._round_end = positions[-1]
        assert self._namespace is not None
        start = 0
        for request in pack(keep, self._namespace, s.max_datums_per_request, s.max_request_bytes, self._protocol):
            end = start + len(request)
            self._held.append(_Request(list(request), keep_pos[start:end]))
            start = end

    def _deliver(self, datums: Sequence[Datum], positions: Sequence[tuple[int, int]]) -> int:
        """Send datums in order; how many from the front are done (accepted,
        or refused and dropped): all of them unless a transient failure stopped it."""
        outcome = self._put(datums)
        if outcome == _OK:
            self.spool.ack(positions[-1])
            return len(datums)
        if outcome in (_TRANSIENT, _UNANSWERED):
            self._unanswered = self._unanswered or outcome == _UNANSWERED
            return 0
        if len(datums) == 1:
            d = datums[0]
            log.warning("cloudwatch_datum_rejected", metric=d.name, dimensions=dict(d.dims), value=d.value)
            self._count_drop("rejected", 1)
            self.spool.ack(positions[0])
            return 1
        mid = len(datums) // 2
        done = self._deliver(datums[:mid], positions[:mid])
        if done < mid:
            return done
        return mid + self._deliver(datums[mid:], positions[mid:])

    def _put(self, datums: Sequence[Datum]) -> str:
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ParamValidationError

        metric_data: list[dict[str, Any]] = []
        for d in datums:
            entry: dict[str, Any] = {
                "MetricName": d.name,
                "Timestamp": datetime.fromtimestamp(d.timestamp, tz=timezone.utc),
                "Value": d.value,
                "Unit": d.unit,
                "StorageResolution": d.resolution,
            }
            if d.dims:
                entry["Dimensions"] = [{"Name": k, "Value": v} for k, v in d.dims]
            metric_data.append(entry)
        self._call_sizes[0] = self._call_sizes[1] = 0
        try:
            self._client.put_metric_data(Namespace=self._namespace, MetricData=metric_data)
        except RequestTooLarge as e:
            log.warning("cloudwatch_request_split", datums=len(datums), bytes=e.size)
            return _SPLIT
        except ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
            if code in INVALID_CODES or code in TOO_LARGE_CODES:
                self._count_error(code)
                return _INVALID if code in INVALID_CODES else _SPLIT
            self._note_failure(code, str(err.get("Message", ""))[:300])
            return _TRANSIENT
        except ParamValidationError as e:
            self._count_error("ParamValidationError")
            log.warning("cloudwatch_invalid_request", error=str(e)[:300])
            return _INVALID
        except BotoCoreError as e:
            self._note_failure(type(e).__name__, str(e)[:300])
            return _UNANSWERED if isinstance(e, HTTPClientError) else _TRANSIENT
        except Exception as e:
            self._note_failure(type(e).__name__, str(e)[:300])
            return _TRANSIENT
        with self._stats_lock:
            self._sent += len(datums)
            self._requests += 1
            self._bytes["before_compression"] += self._call_sizes[0]
            self._bytes["sent"] += self._call_sizes[1]
            self._last_success = time.time()
            self._up = True
        return _OK

    def _count_error(self, code: str) -> str:
        code = _CODE_CHARS.sub("_", code)[:64] or "unknown"
        with self._stats_lock:
            if code not in self._errors and len(self._errors) >= _MAX_ERROR_CODES:
                code = "other"
            self._errors[code] += 1
        return code

    def _note_failure(self, code: str, message: str) -> None:
        """A failure after which the data waits in the spool for a later attempt."""
        code = self._count_error(code)
        with self._stats_lock:
            self._up = False
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("cloudwatch_unreachable", code=code, error=message, spooled=self.spool.datums)

    # ---- Sink protocol -----------------------------------------------------------------
    def flush(self, timeout: float) -> None:
        """Try to send everything spooled now (skipping a pending retry delay);
        return when the spool is empty or timeout seconds passed."""
        deadline = time.monotonic() + timeout
        self._flush_now.set()
        self._wake.set()
        while time.monotonic() < deadline:
            if self.spool.empty() and self._idle.is_set():
                return
            if self._idle.is_set() and not self._flush_now.is_set() and self._retry_at > time.monotonic():
                return  # one attempt was made and failed: the data stays spooled
            time.sleep(0.01)

    def own_metrics(self) -> list[MetricFamily]:
        with self._stats_lock:
            published, sent, requests = self._published, self._sent, self._requests
            dropped, errors, sizes = dict(self._dropped), dict(self._errors), dict(self._bytes)
            last, up = self._last_success, self._up
        oldest = self.spool.oldest_timestamp()
        families: list[MetricFamily] = []

        def single(spec: MetricSpec, value: float) -> None:
            families.append(spec.single(value))

        single(cat.CW_SPOOL_DATUMS, self.spool.datums)
        single(cat.CW_SPOOL_BYTES, self.spool.size_bytes)
        single(cat.CW_SPOOL_OLDEST_AGE, max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        single(cat.CW_SPOOL_MEMORY_ONLY, 1.0 if self.spool.memory_only else 0.0)
        single(cat.CW_DATUMS_PUBLISHED, published)
        single(cat.CW_DATUMS_SENT, sent)
        fam = cat.CW_DATUMS_DROPPED.family()
        for reason in sorted(dropped):
            fam.add((reason,), dropped[reason])
        families.append(fam)
        single(cat.CW_REQUESTS, requests)
        fam = cat.CW_REQUEST_BYTES.family()
        for stage in ("before_compression", "sent"):
            fam.add((stage,), sizes.get(stage, 0))
        families.append(fam)
        fam = cat.CW_API_ERRORS.family()
        for code in sorted(errors):
            fam.add((code,), errors[code])
        families.append(fam)
        single(cat.CW_LAST_SUCCESS, last)
        single(cat.CW_UP, 1.0 if up else 0.0)
        return families

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        if self._thread.is_alive():
            log.warning("cloudwatch_sender_still_busy", spooled=self.spool.datums)
        elif self._held:
            # held requests whose segments the spool cap evicted are lost now
            self._count_drop("spool_full", self.spool.release_inflight())
        close_spool(self.spool)
        log.info("cloudwatch_sink_closed", spooled=self.spool.datums)
