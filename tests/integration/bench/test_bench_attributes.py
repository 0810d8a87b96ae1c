"""``python -m bench.attributes``: every variant runs on a dev server of its own, and the attributes it claims to
set are the ones the workflows carry."""

from __future__ import annotations

import uuid

from bench import attributes


def test_every_variant_is_measured_on_its_own_server():
    lines: list[str] = []
    medians = attributes.measure(workflows=8, rounds=1, log=lines.append)
    assert set(medians) == set(attributes.VARIANTS) and all(ms > 0 for ms in medians.values())
    assert len(lines) == len(attributes.VARIANTS)


async def test_the_probe_sets_the_query_attributes_as_it_ends(temporal_env):
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    client = temporal_env.client
    async with Worker(client, task_queue="attributes-probe", workflows=[attributes.Probe],
                      activities=[attributes.echo], workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await client.start_workflow(attributes.Probe.run, True, id=f"attributes-probe-{uuid.uuid4().hex}",
                                             task_queue="attributes-probe")
        await handle.result()
    described = await handle.describe()
    assert {pair.key.name: pair.value for pair in described.typed_search_attributes
            if pair.key.name.startswith("DataApi")} == {
        "DataApiCompany": "bench", "DataApiKind": "query", "DataApiEndpoint": "bench/point", "DataApiMode": "sync"}
