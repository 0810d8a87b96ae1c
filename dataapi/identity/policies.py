"""Actions and the managed policies that grant them. Adding an action is one line in ACTIONS and one
mention in the policies that should grant it."""

from __future__ import annotations

from dataapi.errors import InvalidDefinition

ACTIONS: dict[str, str] = {
    "data_api:execute": "Execute a visualization endpoint",
    "data_api:get_job": "Read an execution job of a visualization endpoint",
    "admin:users": "Manage the company's users and their policies",
    "admin:keys": "Create and revoke the company's API keys",
    "admin:endpoints": "Create, change and list visualization endpoints",
    "admin:share_contexts": "Create, list and remove share contexts (the rows a user may see)",
    "admin:repositories": "Register and change job repositories",
    "admin:webhooks": "Read and rotate the company's webhook signing secret",
    "jobs:execute": "Create jobs of the company's repositories (Jobs API)",
    "jobs:read": "List jobs and read their status, result, params, output and logs",
    "jobs:delete": "Delete jobs (a running one is cancelled)",
    "jobs:all_clients": "List, read and delete every Jobs API job of the company, not only one's own",
}

_DATA_API = ("data_api:execute", "data_api:get_job")

POLICIES: dict[str, tuple[str, ...]] = {
    "VisualizationViewer": _DATA_API,
    "VisualizationManager": (*_DATA_API, "admin:endpoints"),
    "DataAPIConsumer": _DATA_API,
    "JobsAPIConsumer": ("jobs:execute", "jobs:read", "jobs:delete"),
    "CompanyAdmin": tuple(ACTIONS),
}


def actions_for(policies: list[str] | tuple[str, ...]) -> list[str]:
    """The effective actions of a set of policies, sorted, unknown policies ignored."""
    granted = {a for p in policies for a in POLICIES.get(p, ())}
    return sorted(granted)


def check_policies(policies: list[str]) -> None:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise InvalidDefinition(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICIES)}")
