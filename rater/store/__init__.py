"""Redis: the key layout (`keys`), the Lua scripts (`lua/`), the adapter that calls them,
and the rebuild of the whole state from the topics (`rebuild`)."""

from rater.store.errors import StoreUnavailable
from rater.store.redis_store import (
    Applied,
    LimitChange,
    PaygSwitch,
    RatingInput,
    RatingRequest,
    RedisStore,
    SubscriptionSnapshot,
    UserUsage,
    rating_results,
)

__all__ = ["Applied", "LimitChange", "PaygSwitch", "RatingInput", "RatingRequest",
           "RedisStore", "StoreUnavailable", "SubscriptionSnapshot", "UserUsage",
           "rating_results"]
