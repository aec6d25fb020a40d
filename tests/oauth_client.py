"""Gatehouse's OAuth endpoints driven by a third-party client library:
authlib's OAuth2Session (pinned in scripts/oauth_venv.sh), with requests
as the browser for the login form. TOTP codes are computed here (RFC 6238,
hmac + hashlib), not by the broker's code.

Usage: oauth_client.py BASE_URL SETUP_JSON (see tests/oauth_library.rs).
Prints "ok <step>" per step and "authlib all ok" at the end; any failed
assertion exits non-zero."""

import base64
import hashlib
import hmac
import html
import json
import os
import re
import struct
import sys
import time

# Loopback HTTP in tests; authlib insists on HTTPS otherwise.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

BASE = sys.argv[1]
S = json.loads(sys.argv[2])
TOKEN = BASE + "/oauth/token"
AUTHZ = BASE + "/oauth/authorize"
INTRO = BASE + "/oauth/introspect"
REVOKE = BASE + "/oauth/revoke"
ME = BASE + "/api/users/me"
CB = S["redirect"]


def ok(step):
    print("ok", step, flush=True)


def error_of(fn, *args, **kwargs):
    """The OAuth error code a library call raises."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # authlib's OAuthError carries .error
        return getattr(e, "error", repr(e))
    raise AssertionError(f"{fn} raised no error")


def bearer(token):
    return {"Authorization": "Bearer " + token["access_token"]}


def totp(secret_b32, step):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1_000_000)


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def browser(url, username, password, otp=None):
    """Signs in through the login form like a browser; the Location."""
    with requests.Session() as b:
        page = b.get(url, allow_redirects=False)
        assert page.status_code == 200, (page.status_code, page.text)
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        pattern = r'<input type="hidden" name="([^"]*)" value="([^"]*)">'
        fields = {html.unescape(n): html.unescape(v) for n, v in re.findall(pattern, page.text)}
        assert "csrf" in fields, page.text
        fields.update(username=username, password=password)
        if otp:
            fields["otp"] = otp
        r = b.post(AUTHZ, data=fields, allow_redirects=False)
        assert r.status_code == 303, (r.status_code, r.text)
        return r.headers["Location"]


conf, web, pub, imp = S["confidential"], S["web"], S["public"], S["implicit"]

# client_credentials: Basic (authlib's default) and form fields.
cc = OAuth2Session(conf["id"], conf["secret"])
t = cc.fetch_token(TOKEN, grant_type="client_credentials")
assert t["token_type"] == "Bearer" and "refresh_token" not in t, t
assert requests.get(ME, headers=bearer(t)).json()["username"] == conf["id"]
post = OAuth2Session(conf["id"], conf["secret"], token_endpoint_auth_method="client_secret_post")
assert post.fetch_token(TOKEN, grant_type="client_credentials")["access_token"]
ok("client_credentials")

# password, two refreshes (the count), then reuse revokes the grant.
pw = OAuth2Session(conf["id"], conf["secret"])
t = pw.fetch_token(TOKEN, username=S["user"], password=S["password"])
rt0 = t["refresh_token"]
t1 = pw.refresh_token(TOKEN, refresh_token=rt0)
rt1 = t1["refresh_token"]
assert rt1 != rt0
t2 = pw.refresh_token(TOKEN, refresh_token=rt1)
# authlib keeps the old refresh token when none comes back: none did.
assert t2.get("refresh_token") in (None, rt1), t2
assert requests.get(ME, headers=bearer(t2)).status_code == 200
assert error_of(pw.refresh_token, TOKEN, refresh_token=rt1) == "invalid_grant"
assert requests.get(ME, headers=bearer(t2)).status_code == 401
assert error_of(pw.refresh_token, TOKEN, refresh_token=rt0) == "invalid_grant"
ok("password refresh exhaustion reuse")

# The errors, as the library reports them.
assert error_of(OAuth2Session(conf["id"], "wrong").fetch_token, TOKEN,
                grant_type="client_credentials") == "invalid_client"
assert error_of(cc.fetch_token, TOKEN, grant_type="urn:nope") == "unsupported_grant_type"
assert error_of(cc.fetch_token, TOKEN, grant_type="client_credentials", scope="root") == "invalid_scope"
assert error_of(pw.fetch_token, TOKEN, username=S["user"], password="nope") == "invalid_grant"
assert error_of(OAuth2Session(web["id"], web["secret"]).fetch_token, TOKEN,
                grant_type="client_credentials") == "unauthorized_client"
# Two client authentication methods at once (authlib checks missing
# parameters itself, and sends each parameter once).
e = error_of(cc.fetch_token, TOKEN, grant_type="client_credentials", client_secret=conf["secret"])
assert e == "invalid_request", e
ok("errors")

# Authorization code with PKCE (public client) through the form with MFA.
spa = OAuth2Session(pub["id"], redirect_uri=CB, scope="api mqtt", code_challenge_method="S256")
verifier = generate_token(48)
url, state = spa.create_authorization_url(AUTHZ, code_verifier=verifier)
step = int(time.time()) // 30
location = browser(url, S["mfa_user"], S["mfa_password"], totp(S["mfa_secret"], step + 1))
assert f"state={state}" in location, location
t = spa.fetch_token(TOKEN, authorization_response=location, code_verifier=verifier)
assert t["refresh_token"] and t["scope"] == "api mqtt", t
assert requests.get(ME, headers=bearer(t)).json()["username"] == S["mfa_user"]
t = spa.refresh_token(TOKEN)
assert requests.get(ME, headers=bearer(t)).status_code == 200
ok("authorization_code pkce mfa refresh")

# Without PKCE a public client is sent back with invalid_request.
url, state = OAuth2Session(pub["id"], redirect_uri=CB).create_authorization_url(AUTHZ)
r = requests.get(url, allow_redirects=False)
assert r.status_code == 302 and "error=invalid_request" in r.headers["Location"], r.headers
assert f"state={state}" in r.headers["Location"]
ok("pkce required")

# Implicit, with a token that never expires.
implicit = OAuth2Session(imp["id"], redirect_uri=CB, scope="api")
url, state = implicit.create_authorization_url(AUTHZ, response_type="token")
t = implicit.fetch_token(authorization_response=browser(url, S["user"], S["password"]))
assert "expires_in" not in t, t
assert claims(t["access_token"])["exp"] == 253402300799
assert requests.get(ME, headers=bearer(t)).status_code == 200
ok("implicit never expires")

# Introspection and revocation.
t = pw.fetch_token(TOKEN, username=S["user"], password=S["password"])
info = pw.introspect_token(INTRO, token=t["access_token"]).json()
assert info["active"] and info["username"] == S["user"] and info["client_id"] == conf["id"], info
assert pw.revoke_token(REVOKE, token=t["access_token"], token_type_hint="access_token").status_code == 200
assert pw.introspect_token(INTRO, token=t["access_token"]).json() == {"active": False}
assert pw.revoke_token(REVOKE, token=t["refresh_token"], token_type_hint="refresh_token").status_code == 200
assert error_of(pw.refresh_token, TOKEN, refresh_token=t["refresh_token"]) == "invalid_grant"
ok("introspect revoke")

m = requests.get(BASE + "/.well-known/oauth-authorization-server").json()
assert m["token_endpoint"] == TOKEN and m["code_challenge_methods_supported"] == ["S256"], m
ok("metadata")
print("authlib all ok")
