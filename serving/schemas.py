"""Request and response models of the recommendation service: what the shop sends and gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


def _user_id():
    return Field(min_length=1, max_length=64, description="the shop's user id (1-64 characters)")


def _item_id():
    return Field(min_length=1, max_length=64, description="an item id of the catalogue (1-64 characters)")


class RecommendRequest(BaseModel):
    """`POST /recommend`: the top-k items for one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = _user_id()
    k: int = Field(10, ge=1, le=100, description="how many items to return (1-100)")
    region: str | None = Field(None, max_length=64, description="the user's region, for unknown users")


class SimilarItemsRequest(BaseModel):
    """`POST /similar-items`: the items closest to one item in the candidate tower's space."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = _item_id()
    k: int = Field(10, ge=1, le=100, description="how many items to return (1-100)")


class ScoredItem(BaseModel):
    """One recommended item, its score and a short, true reason."""

    item_id: str
    score: float
    reason: str
    repeat: bool | None = Field(
        None,
        description="true: the user bought the item before (a repeat purchase, the reason says how often and"
        " when); false: a discovery, new to the user; null where it does not apply (similar items)",
    )


class RecommendResponse(BaseModel):
    """Ranked items for a user; `fallback` is true when popular items stand in for the model."""

    user_id: str
    items: list[ScoredItem]
    model: str = Field(description="BentoML model tag that answered")
    fallback: bool = Field(description="true when the user is unknown and popular items were served")
    request_id: str = Field("", description="this answer's id: send it with `/events` to attribute outcomes")
    variant: Literal["champion", "challenger"] = Field(
        "champion", description="the experiment variant that produced the list (champion when none runs)"
    )
    experiment: str = Field("", description="the running experiment's id, empty when none runs")


class SimilarItemsResponse(BaseModel):
    """Items similar to `item_id`, by inner product of candidate-tower embeddings."""

    item_id: str
    items: list[ScoredItem]
    model: str


class Event(BaseModel):
    """One behavioural event from the shop, as in the raw events contract."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = _user_id()
    item_id: str = _item_id()
    event_type: Literal["view", "add_to_cart", "purchase"]
    timestamp: datetime | None = Field(None, description="UTC; the server's clock when omitted")
    session_id: str | None = Field(None, max_length=64)
    request_id: str | None = Field(
        None,
        max_length=64,
        description="the `/recommend` answer that showed the item: the event is attributed to its variant and"
        " the item's position there",
    )


EventRow = Annotated[Any, WithJsonSchema(Event.model_json_schema())]
"""One entry of `POST /events`: documented as an `Event`, parsed row by row by the service, so that one
malformed event is rejected (and kept in quarantine) alone instead of failing the whole request."""


class EventsRequest(BaseModel):
    """`POST /events`: a user's new events, pushed to the online store and logged for the next batch."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventRow] = Field(min_length=1, max_length=1000)


class EventError(BaseModel):
    """Why one event was rejected: its position in `events`, the field, the broken rule and the reason."""

    index: int = Field(description="position of the event in the request's `events` list")
    field: str | None = Field(description="the offending field, null when the event as a whole is wrong")
    rule: str = Field(
        description="`schema:<pydantic error type>` for a malformed event, else the expectation of the"
        " events suite it broke, e.g. `expect_column_values_to_be_in_set(item_id)`"
    )
    reason: str


class EventsResponse(BaseModel):
    """What happened to every event of the request: accepted ones, rejected ones and where each went.

    Valid events are logged and pushed even when others are rejected (200); when every event is
    rejected the answer is 422 with `error` set. Rejected events are kept in `quarantine_path` with
    their reasons, so nothing sent is lost.
    """

    accepted: int = Field(description="events that met the contract, logged for the next batch")
    pushed: int = Field(description="accepted events pushed to the online store")
    attributed: int = Field(
        0, description="accepted events attributed to the answer their `request_id` names"
    )
    rejected: int = Field(0, description="events rejected (kept in quarantine)")
    errors: list[EventError] = Field(default_factory=list, description="one entry per broken rule")
    log_path: str | None = Field(None, description="where the accepted events were appended")
    quarantine_path: str | None = Field(None, description="where the rejected events were appended")
    error: str | None = Field(None, description="set (with status 422) when every event was rejected")


class ErrorResponse(BaseModel):
    """A request the service could not read at all: malformed JSON, missing or extra top-level fields."""

    error: str
    detail: list[dict] = Field(default_factory=list)


class ModelMetadata(BaseModel):
    """`GET /metadata`: what is being served and what made it."""

    model: str
    champion: str | None
    loaded_at: datetime
    n_items: int
    index: dict
    stages: dict = Field(
        default_factory=dict,
        description="per stage (two-tower, co-occurrence, popularity, ranker): whether it serves and its "
        "validation figures",
    )
    metadata: dict
