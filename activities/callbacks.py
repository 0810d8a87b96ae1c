"""The callback activity: one signed delivery attempt of a finished job's result, recorded in the log."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import orjson
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity

from activities.blocking import BlockingActivities
from activities.callback_defs import DELIVER_CALLBACK
from activities.delivery import deliver
from dataapi.callbacks import deliveries
from dataapi.callbacks import secrets as webhook_secrets
from dataapi.callbacks.webhooks import webhook_headers
from dataapi.data_api.jobs import job_body
from dataapi.db import session_scope, while_unavailable
from dataapi.logs import log_context
from dataapi.messages import AttemptInput, AttemptOutput
from dataapi.models import Job, utcnow
from dataapi.settings import Settings
from dataapi.statuses import AttemptOutcome, JobStatus
from dataapi.storage.base import ArtifactStore

log = logging.getLogger("dataapi.activities.callbacks")
_FINAL = (AttemptOutcome.DELIVERED, AttemptOutcome.GONE, AttemptOutcome.REFUSED)
STORE_WAIT_SECONDS = 20.0  # each store step of an attempt waits this long for an unreachable store (within 60 s)
HEARTBEAT_SECONDS = 2.0  # the workflow's heartbeat timeout for an attempt is 10 s


async def _heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)


def _job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:  # a delivery's job is a foreign key: only a store edited by hand gets here
        raise LookupError(f"job {job_id} is not in the metadata store")
    return job


class CallbackActivities(BlockingActivities):
    def __init__(self, settings: Settings, engine: Engine, artifacts: ArtifactStore, box: webhook_secrets.SecretBox,
                 executor: ThreadPoolExecutor):
        self.settings, self.engine, self.artifacts, self.box, self.executor = settings, engine, artifacts, box, executor

    def _prepare(self, inp: AttemptInput) -> tuple[str, bytes, list[str]]:
        """The URL, the body (the job as GET job shows it) and the signing secrets."""
        with session_scope(self.engine) as session:
            job = _job(session, inp.job_id)
            delivery = deliveries.open_delivery(session, inp.delivery_id, job)
            result = self.artifacts.get_bytes(job.result_key) \
                if job.status == JobStatus.COMPLETED and job.result_key is not None else None
            secrets = webhook_secrets.signing_secrets(session, self.box, job.company_id,
                                                self.settings.webhook_secret_grace_seconds)
            body = job_body(job, result, self.settings.result_retention_seconds)
            return delivery.url, orjson.dumps(body), secrets

    def _record(self, inp: AttemptInput, outcome: str, status: int | None, error: str | None, ms: int,
                next_delay: float | None) -> None:
        with session_scope(self.engine) as session:
            delivery = deliveries.open_delivery(session, inp.delivery_id, _job(session, inp.job_id))
            next_at = utcnow() + timedelta(seconds=next_delay) if next_delay is not None else None
            deliveries.record_attempt(session, delivery, inp.attempt, outcome, status, error, ms, next_at)

    @activity.defn(name=DELIVER_CALLBACK)
    async def deliver_callback(self, inp: AttemptInput) -> AttemptOutput:
        """One attempt. It heartbeats throughout, so an attempt lost with its worker (or whose completion was
        lost in a Temporal outage) is retried after the heartbeat timeout, not the 60 s start-to-close."""
        beating = asyncio.create_task(_heartbeat_every(HEARTBEAT_SECONDS))
        try:
            return await self._attempt(inp)
        finally:
            beating.cancel()

    async def _attempt(self, inp: AttemptInput) -> AttemptOutput:
        log_context.set({"job_id": inp.job_id, "webhook_id": inp.delivery_id})
        url, body, secrets = await while_unavailable(lambda: self._blocking(self._prepare, inp), STORE_WAIT_SECONDS)
        s = self.settings
        attempt = await deliver(url, body, webhook_headers(inp.delivery_id, int(time.time()), body, secrets),
                                allow_cidrs=s.callback_allow_cidrs, allow_hosts=s.callback_allow_hosts,
                                ca_bundle=s.callback_ca_bundle,
                                timeout=s.callback_timeout_seconds, max_response_bytes=s.callback_max_response_bytes)
        next_delay = None
        if attempt.outcome not in _FINAL and inp.next_delay_seconds is not None:
            next_delay = attempt.retry_after_seconds if attempt.retry_after_seconds is not None \
                else inp.next_delay_seconds
        log.info("callback %s of job %s attempt %d: %s %s", inp.delivery_id, inp.job_id, inp.attempt,
                 attempt.outcome, attempt.status_code or attempt.error)
        activity.metric_meter().create_counter(
            "dataapi_callback_attempts", "Callback delivery attempts by outcome").add(1, {"outcome": attempt.outcome})
        await while_unavailable(lambda: self._blocking(self._record, inp, attempt.outcome, attempt.status_code,
                                                       attempt.error, attempt.duration_ms, next_delay),
                                STORE_WAIT_SECONDS)
        return AttemptOutput(outcome=attempt.outcome, status_code=attempt.status_code, next_delay_seconds=next_delay)
