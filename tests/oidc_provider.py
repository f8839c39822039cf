"""A real OpenID Connect provider on 127.0.0.1 for sign-in tests, built from Authlib's server components.

Authlib's framework-neutral AuthorizationServer with the authorization-code grant, PKCE (RFC 7636) and the
OpenID Connect code extension does the protocol: checking the client and its redirect URI, issuing and
redeeming single-use codes, and signing the ID token with an RSA key whose public half is served as JWKS.
This module only adapts it to `http.server` in a thread and keeps its state in memory. It auto-approves
the configured user (no login form), so a browser test drives the real redirects and token exchange.

    with OIDCProvider(client_id="wb", client_secret="s", redirect_uri=".../oauth2callback",
                      user={"email": "ann@example.com", "name": "Ann"}) as idp:
        idp.metadata_url  # for secrets.toml [auth] server_metadata_url
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Error, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.requests import JsonRequest
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey

log = logging.getLogger(__name__)
SCOPES = "openid email profile"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = SCOPES

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(scope_to_list(self.scope))
        return list_to_scope([s for s in scope_to_list(scope or "") if s in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]):
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._values.items()}

    @property
    def datalist(self) -> defaultdict[str, list]:
        return defaultdict(list, self._values)


class _Request(OAuth2Request):
    """An http.server request as Authlib sees it: query arguments and form body merged into the payload."""

    def __init__(self, *, method: str, uri: str, headers: dict[str, str], args: dict[str, list[str]],
                 form: dict[str, list[str]]):
        super().__init__(method=method, uri=uri, headers=headers)
        self._args, self._form = args, form
        merged: dict[str, list[str]] = defaultdict(list)
        for source in (args, form):
            for k, v in source.items():
                merged[k].extend(v)
        self.payload = _Payload(dict(merged))

    @property
    def args(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._args.items()}

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._form.items()}


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.codes[code] = AuthCode(
            code=code, client_id=request.client.client_id, redirect_uri=data.get("redirect_uri", ""),
            scope=request.client.get_allowed_scope(data.get("scope", "")), user=dict(request.user),
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"))

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        item = self.server.codes.get(code)
        return item if item is not None and item.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        self.server.codes.pop(authorization_code.code, None)  # single use

    def authenticate_user(self, authorization_code: AuthCode) -> dict:
        return authorization_code.user


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: "OIDCProvider"):
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(c.nonce == nonce for c in self.provider.server.codes.values())

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider.key

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.client_id]}

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.provider.key.kid}

    def generate_user_info(self, user: dict, scope: str) -> UserInfo:
        return self.provider.user_info(user, scope)


class _Server(AuthorizationServer):
    def __init__(self, clients: dict[str, Client]):
        super().__init__(scopes_supported=scope_to_list(SCOPES))
        self.clients = clients
        self.codes: dict[str, AuthCode] = {}
        self.tokens: dict[str, dict] = {}  # access token -> {user, scope}
        self.register_token_generator("default", BearerTokenGenerator(lambda **_: generate_token(42)))

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        self.tokens[token["access_token"]] = {"user": request.user, "scope": token.get("scope", "")}

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: Any) -> JsonRequest:
        raise NotImplementedError("no JSON endpoints here")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("oidc provider signal %s", name)


class OIDCProvider:
    """The provider, its one client and the person it signs in (change `user` between sign-ins)."""

    def __init__(self, *, client_id: str, client_secret: str, redirect_uri: str, user: dict[str, Any]):
        self.user = dict(user)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"})
        self.server = _Server({client_id: Client(client_id, client_secret, [redirect_uri])})
        self.server.register_grant(_CodeGrant, [_OpenIDCode(self), CodeChallenge(required=False)])
        self.requests: list[str] = []  # "GET /authorize", "POST /token", ... in order: what the flow did
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="oidc-provider")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": scope_to_list(SCOPES),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name", "preferred_username"],
        }

    def user_info(self, user: dict, scope: str) -> UserInfo:
        scopes = scope_to_list(scope)
        info = UserInfo(sub=user.get("sub") or user.get("email") or "anonymous")
        if "email" in scopes and user.get("email"):
            info["email"] = user["email"]
            info["email_verified"] = user.get("email_verified", True)
        if "profile" in scopes:
            info.update({k: user[k] for k in ("name", "preferred_username") if user.get(k)})
        return info

    def __enter__(self) -> "OIDCProvider":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("oidc provider: " + fmt, *args)

            def _request(self) -> _Request:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                return _Request(method=self.command, uri=f"{provider.issuer}{self.path}",
                                headers={k: v for k, v in self.headers.items()},
                                args=parse_qs(parts.query), form=parse_qs(body))

            def _send(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
                payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else str(body or "").encode()
                self.send_response(status)
                names = set()
                for k, v in headers or []:
                    self.send_header(k, v)
                    names.add(k.lower())
                if "content-type" not in names:
                    self.send_header("Content-Type", "application/json" if isinstance(body, (dict, list))
                                     else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                route = urlsplit(self.path).path
                provider.requests.append(f"GET {route}")
                if route == "/.well-known/openid-configuration":
                    self._send(200, provider.metadata())
                elif route == "/jwks":
                    self._send(200, KeySet([provider.key]).as_dict(private=False))
                elif route == "/authorize":
                    request = self._request()
                    try:  # auto-approve: the configured user has "logged in" and consents
                        grant = provider.server.get_consent_grant(request, end_user=provider.user)
                    except OAuth2Error as err:
                        self._send(*err())
                        return
                    self._send(*provider.server.create_authorization_response(request, provider.user, grant))
                elif route == "/userinfo":
                    auth = self.headers.get("Authorization", "")
                    entry = provider.server.tokens.get(auth.removeprefix("Bearer ").strip())
                    if entry is None:
                        self._send(401, {"error": "invalid_token"})
                    else:
                        self._send(200, dict(provider.user_info(entry["user"], entry["scope"])))
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                route = urlsplit(self.path).path
                provider.requests.append(f"POST {route}")
                if route == "/token":
                    self._send(*provider.server.create_token_response(self._request()))
                else:
                    self._send(404, {"error": "not_found"})

        return Handler
