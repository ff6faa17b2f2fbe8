"""Request and response models of the recommendation service: what the shop sends and gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class RecommendResponse(BaseModel):
    """Ranked items for a user; `fallback` is true when popular items stand in for the model."""

    user_id: str
    items: list[ScoredItem]
    model: str = Field(description="BentoML model tag that answered")
    fallback: bool = Field(description="true when the user is unknown and popular items were served")


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


class EventsRequest(BaseModel):
    """`POST /events`: a user's new events, pushed to the online store and logged for the next batch."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    """How many events were accepted, pushed online and logged (and where)."""

    accepted: int
    pushed: int
    log_path: str


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
