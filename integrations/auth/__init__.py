"""Accounts and sessions: :class:`AuthIntegration` (JWT middleware, register/login APIs), the
user entity, scrypt password hashing and token helpers.

>>> from integrations.auth import AuthIntegration, auth_entities
>>> user = auth_entities("User")
>>> auth = AuthIntegration()                    # reads AUTH_JWT_SECRET
>>> app = create_app(controller, apis=auth.create_apis(), middlewares=auth.create_middlewares())
"""

from integrations.auth.integration import (
    CLAIMS,
    SECRET_ENV,
    TTL_ENV,
    AuthIntegration,
    UserFields,
    auth_entities,
    auth_properties,
)
from integrations.auth.passwords import (
    DEFAULT_PARAMS,
    ScryptParams,
    hash_password,
    needs_rehash,
    verify_password,
)
from integrations.auth.tokens import (
    HMAC_ALGORITHMS,
    TokenError,
    TokenSettings,
    decode_token,
    issue_token,
    parse_subject,
)

__all__ = [
    "CLAIMS",
    "DEFAULT_PARAMS",
    "HMAC_ALGORITHMS",
    "SECRET_ENV",
    "TTL_ENV",
    "AuthIntegration",
    "ScryptParams",
    "TokenError",
    "TokenSettings",
    "UserFields",
    "auth_entities",
    "auth_properties",
    "decode_token",
    "hash_password",
    "issue_token",
    "needs_rehash",
    "parse_subject",
    "verify_password",
]
