"""``create_app(settings) -> faust.App``: all wiring happens here, nothing at import time."""

from __future__ import annotations

from typing import Any, cast

import faust
from prometheus_client import CollectorRegistry, generate_latest

from streams import compat, delivery, live
from streams.agents import fold
from streams.agents.merge import MergeService
from streams.context import Context
from streams.settings import Settings
from streams.supervision import CrashPolicy
from streams.telemetry import Telemetry
from streams.topics import FOLD_TABLES, MAX_RECORD_BYTES
from streams.windows import window_specs

# Bump when a table's value layout changes (STYLE.md §10): a new version reads fresh changelogs.
STATE_VERSION = 1


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    compat.install()
    registry = registry if registry is not None else CollectorRegistry()
    app = faust.App(
        settings.app_id,
        version=STATE_VERSION,
        broker=settings.broker,
        store=settings.store,
        datadir=settings.data_dir,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(0.5, settings.session_timeout / 5),
        broker_rebalance_timeout=max(10.0, settings.session_timeout * 2),
        table_standby_replicas=0,
        processing_guarantee="at_least_once",
        producer_max_request_size=MAX_RECORD_BYTES,  # dead letters of 1 MB inputs
        # Faust refuses to start when a RocksDB partition's persisted changelog offset is above
        # the changelog's highwater. Tansu reports the highwater as the base offset of the last
        # record batch + 1, so after a SIGKILL mid-batch the local DB is legitimately "ahead"
        # and the check crash-looped the worker (docs/crash-safety.md, RocksDB). The markers
        # and seals make a DB that is ahead harmless; delete CX_DATA_DIR with the topics.
        recovery_consistency_check=False,
        producer_linger=0.005,
        producer_max_batch_size=1 << 20,
        # The changelogs and the partials topic are created by `cxpulse topics create`
        # with explicit configs; Faust may still declare what is missing.
        topic_allow_declare=True,
    )
    # the 100 ms fetch wait, and batch delivery when enabled (streams/delivery.py)
    delivery.install(app, batch=settings.batch_delivery)
    telemetry = Telemetry.create(registry, settings.max_members)
    ctx = Context(
        app=app,
        settings=settings,
        telemetry=telemetry,
        windows=window_specs(settings.window_seconds),
        crashes=CrashPolicy(
            telemetry.agent_crashes, settings.max_agent_crashes, settings.agent_crash_window
        ),
    )
    for topic_name, table_name in FOLD_TABLES.items():
        fold.register(ctx, topic_name, table_name)
    merge = MergeService(ctx)
    live.register(app, ctx)  # the live page (/, /live) and /api/scores

    @app.page("/metrics")
    async def metrics(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # ``name[]`` restricts the page to those samples, as prometheus_client's own WSGI and ASGI
        # apps do: a poller that wants one family (cxpulse bench, a health check) does not make
        # the worker render every cx_score series (~35 ms a page at the bench's size).
        names = cast(Any, request.query).getall("name[]", [])  # aiohttp's MultiDictProxy
        source = registry.restricted_registry(names) if names else registry
        return view.bytes(generate_latest(source), content_type="text/plain; version=0.0.4")

    app.cx_context = ctx  # type: ignore[attr-defined]
    app.cx_merge = merge  # type: ignore[attr-defined]
    return app
