"""Temporal connection and the custom search attributes that let operators filter jobs in the UI."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from dataapi.settings import Settings

# No PII: slugs and ids only.
SA_COMPANY = SearchAttributeKey.for_keyword("DataApiCompany")
SA_KIND = SearchAttributeKey.for_keyword("DataApiKind")  # query | job
SA_ENDPOINT = SearchAttributeKey.for_keyword("DataApiEndpoint")  # namespace/slug
SA_MODE = SearchAttributeKey.for_keyword("DataApiMode")  # sync | async
SA_REPOSITORY = SearchAttributeKey.for_keyword("DataApiRepository")
SEARCH_ATTRIBUTES = [SA_COMPANY, SA_KIND, SA_ENDPOINT, SA_MODE, SA_REPOSITORY]


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` flags that register the search attributes."""
    flags = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace, lazy=lazy)
