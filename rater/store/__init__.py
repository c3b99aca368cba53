"""Redis: the key layout, the Lua scripts, and the adapter that calls them."""

from rater.store.redis_store import (
    PaygSwitch,
    RatingInput,
    RatingRequest,
    RedisStore,
    SubscriptionSnapshot,
    rating_results,
)

__all__ = ["PaygSwitch", "RatingInput", "RatingRequest", "RedisStore", "SubscriptionSnapshot",
           "rating_results"]
