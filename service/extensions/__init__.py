"""Extensions, created unbound and bound to the app in create_app; the names taken from here."""

from service.extensions.limit_keys import (
    SENDING_BIDS,
    WRITING_REPAIR_MESSAGES,
    account_limit_key,
    address_key,
    client_address,
    email_limit_key,
    rate_limit_key,
)
from service.extensions.openapi import (
    RETRY_AFTER,
    WAITED_OUT,
    ReachApi,
    ShapeConverter,
    ShapePlugin,
)
from service.extensions.route_limiter import RouteLimiter
from service.extensions.route_limits import (
    Counted,
    auth_email_limit,
    auth_limit,
    configured_limit,
    count_as_route,
    give_back,
    limit_setting,
    only_refusals_count,
    unread_requests_do_not_count,
)
from service.extensions.unbound import db, limiter

__all__ = [
    "RETRY_AFTER",
    "SENDING_BIDS",
    "WAITED_OUT",
    "WRITING_REPAIR_MESSAGES",
    "Counted",
    "ReachApi",
    "RouteLimiter",
    "ShapeConverter",
    "ShapePlugin",
    "account_limit_key",
    "address_key",
    "auth_email_limit",
    "auth_limit",
    "client_address",
    "configured_limit",
    "count_as_route",
    "db",
    "email_limit_key",
    "give_back",
    "limit_setting",
    "limiter",
    "only_refusals_count",
    "rate_limit_key",
    "unread_requests_do_not_count",
]
