"""The custom search attributes of the project's workflows, which let operators filter jobs in the Temporal UI;
and the one builder of a workflow's attributes. No PII: slugs and ids only."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

SA_COMPANY = SearchAttributeKey.for_keyword("DataApiCompany")
SA_KIND = SearchAttributeKey.for_keyword("DataApiKind")  # query | job | callback
SA_ENDPOINT = SearchAttributeKey.for_keyword("DataApiEndpoint")  # namespace/slug
SA_MODE = SearchAttributeKey.for_keyword("DataApiMode")  # sync | async
SA_REPOSITORY = SearchAttributeKey.for_keyword("DataApiRepository")
SEARCH_ATTRIBUTES = [SA_COMPANY, SA_KIND, SA_ENDPOINT, SA_MODE, SA_REPOSITORY]


def search_attributes(company_slug: str, kind: str, *, endpoint: str | None = None, mode: str | None = None,
                      repository: str | None = None) -> TypedSearchAttributes:
    """A workflow's attributes: its company and kind always, the others when given."""
    pairs = [SearchAttributePair(SA_COMPANY, company_slug), SearchAttributePair(SA_KIND, kind)]
    for key, value in ((SA_ENDPOINT, endpoint), (SA_MODE, mode), (SA_REPOSITORY, repository)):
        if value is not None:
            pairs.append(SearchAttributePair(key, value))
    return TypedSearchAttributes(pairs)


def updates(attributes: TypedSearchAttributes) -> list[SearchAttributeUpdate]:
    """The same attributes set from within a workflow (``workflow.upsert_search_attributes``)."""
    return [pair.key.value_set(pair.value) for pair in attributes]
