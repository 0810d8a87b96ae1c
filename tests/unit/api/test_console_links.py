"""The console links each job to its workflow in the Temporal UI: the configured UI, else the embedded one."""

from api.console.jobs import temporal_link
from dataapi.settings import Settings


def test_the_embedded_ui_by_default():
    settings = Settings(temporal_ui_port=8299, temporal_namespace="default")
    assert temporal_link(settings, "q-1") == "http://localhost:8299/namespaces/default/workflows/q-1"


def test_a_configured_ui_and_quoted_names():
    settings = Settings(temporal_ui_url="https://temporal.example.com/", temporal_namespace="data api")
    assert temporal_link(settings, "job/1") == \
        "https://temporal.example.com/namespaces/data%20api/workflows/job%2F1"
