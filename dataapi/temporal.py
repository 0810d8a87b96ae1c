"""Temporal: the connection, the workflow runners, the dev server's flags and the registration of the custom
search attributes (``dataapi.search_attributes``) on a cluster."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, TLSConfig
from temporalio.runtime import Runtime
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from dataapi.converter import data_converter
from dataapi.search_attributes import SEARCH_ATTRIBUTES
from dataapi.settings import Settings

# The sandbox keeps checking every workflow's calls (no clock, random, I/O or threads), but its modules are
# the process's own instead of a fresh import per workflow run, a large part of a workflow task's CPU. Our
# workflow modules are side-effect free at import time, which is what re-importing protects against.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())
# QueryWorkflow, the hot path (every sync call), runs without the sandbox, whose checks cost CPU on every
# activation (docs/performance.md). Its checks are not lost: the replay tests run every recorded QueryWorkflow history
# through the default sandbox in CI, where a clock, random or I/O call in the workflow fails.
QUERY_WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()

# The dev server's SQLite file in WAL mode with synchronous=NORMAL: a commit is one append to the log instead
# of a journal write plus two fsyncs, so each history write costs a fraction. A killed process loses nothing
# committed; only a power cut may drop the last commits, and the file stays consistent (docs/performance.md).
DEV_SERVER_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` flags: the search attributes and the SQLite pragmas."""
    flags = []
    for pragma in DEV_SERVER_PRAGMAS:
        flags += ["--sqlite-pragma", pragma]
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


def tls_config(settings: Settings) -> TLSConfig | bool:
    files = (settings.temporal_tls_ca_file, settings.temporal_tls_cert_file, settings.temporal_tls_key_file)
    if not any(files):
        return settings.temporal_tls or bool(settings.temporal_api_key)
    ca, cert, key = (Path(f).read_bytes() if f else None for f in files)
    return TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key)


_connected = False


def connected() -> bool:
    """Whether this process has made a Temporal client: the SDK's Rust threads then live until it exits."""
    return _connected


async def connect(settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None) -> Client:
    global _connected
    _connected = True
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, lazy=lazy, tls=tls_config(settings),
        api_key=settings.temporal_api_key, runtime=runtime, data_converter=data_converter(settings))


async def setup(client: Client, namespace: str) -> list[str]:
    """Registers the project's search attributes on any cluster (idempotent); returns those it added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    missing = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
               if key.name not in existing.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
    return sorted(missing)


CODEC_PATH = "/api/v1/temporal-codec"


def ui_codec_flags(settings: Settings) -> list[str]:
    """``temporal server start-dev`` flags pointing the embedded UI at the API's codec endpoint, whose operator
    token is generated into var/codec-token (the UI decodes only for a browser signed in with it)."""
    from dataapi.codec import ensure_codec_token

    ensure_codec_token(settings)
    return ["--ui-codec-endpoint", settings.base_url + CODEC_PATH]
