#!/usr/bin/env python3
"""Live interop helper for crates/keepsake/tests/interop_live.rs.

Reads one JSON request per line on stdin and answers one JSON line on
stdout, so a test makes hundreds of cookies with one Python process. Every
cookie goes through the frameworks' real session machinery:

* Flask: a real app's request cycle (test client), SecureCookieSessionInterface;
* Starlette: SessionMiddleware on a real Starlette app (TestClient);
* Django: django.contrib.sessions.backends.signed_cookies.SessionStore.

Time is pinned to the request's "now" the way gen_vectors.py pins it
(itsdangerous' TimestampSigner.get_timestamp, time.time for Django).

Requests:
  {"fw": "flask"|"starlette"|"django", "op": "encode", "key": str | null,
   "key_hex": hex | null, "fallbacks": [str], "session": text, "now": int}
      -> {"cookie": str | null}
  {"fw": ..., "op": "decode", "key": ..., "key_hex": ..., "fallbacks": [...],
   "cookie": str, "now": int, "max_age": int | null}
      -> {"status": int, "session": text | null, "reset": bool}
  {"fw": ..., "op": "visit", "key": ..., "key_hex": ..., "fallbacks": [...],
   "cookie": str | null, "now": int, "set": {key: JSON value} | null,
   "settings": {NAME: value}}
      -> {"status": int, "user": JSON, "cookie": str | null, "max_age": int | null}
      One request through the framework's own session middleware (Django's
      SessionMiddleware included) that reads session["user"] and, with
      "set", sets those keys (plain JSON values). "cookie" is the session
      cookie the answer sets, if any; "max_age" its lifetime in seconds
      (Max-Age, else Expires minus the real clock, rounded), null for a
      browser-session cookie. "settings": Flask config (e.g.
      SESSION_REFRESH_EACH_REQUEST) or Django settings (e.g.
      SESSION_EXPIRE_AT_BROWSER_CLOSE).
"session" text is the framework's own serialization: Flask's tagged JSON,
plain JSON for the others (key order kept).
"""
import json
import sys
import traceback
import types
from unittest import mock

import django
import flask
from django.conf import settings
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

urls = types.ModuleType("interop_urls")
urls.urlpatterns = []
sys.modules["interop_urls"] = urls
settings.configure(
    SECRET_KEY="placeholder-replaced-per-request",
    SECRET_KEY_FALLBACKS=[],
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    INSTALLED_APPS=["django.contrib.sessions"],
    ROOT_URLCONF="interop_urls",
    USE_TZ=True,
)
django.setup()
from django.contrib.sessions.backends.signed_cookies import SessionStore  # noqa: E402
from django.test.utils import override_settings  # noqa: E402


def secret(req):
    if req.get("key_hex") is not None:
        return bytes.fromhex(req["key_hex"])
    return req["key"]


def cookie_from(headers, name):
    for header in headers:
        first = header.split(";", 1)[0]
        if first.startswith(name + "="):
            return first[len(name) + 1:]
    return None


def set_cookie_answer(headers, name):
    """The value and lifetime of the cookie `name` in Set-Cookie `headers`."""
    import email.utils
    import time as real_time
    for header in headers:
        parts = [part.strip() for part in header.split(";")]
        if not parts[0].startswith(name + "="):
            continue
        attrs = {}
        for part in parts[1:]:
            attr, _, value = part.partition("=")
            attrs[attr.lower()] = value
        if "max-age" in attrs:
            max_age = int(attrs["max-age"])
        elif "expires" in attrs:
            at = email.utils.parsedate_to_datetime(attrs["expires"]).timestamp()
            max_age = round(at - real_time.time())
        else:
            max_age = None
        return {"cookie": parts[0][len(name) + 1:], "max_age": max_age}
    return {"cookie": None, "max_age": None}


# ----- Flask -------------------------------------------------------------------
def flask_app(req):
    app = flask.Flask("interop")
    app.secret_key = secret(req)
    app.config["SECRET_KEY_FALLBACKS"] = req.get("fallbacks") or []
    if req.get("max_age") is not None:
        app.config["PERMANENT_SESSION_LIFETIME"] = req["max_age"]

    @app.post("/set")
    def set_():
        data = app.session_interface.serializer.loads(flask.request.get_data(as_text=True))
        flask.session.update(data)
        return "ok"

    @app.get("/read")
    def read():
        return app.session_interface.serializer.dumps(dict(flask.session))

    return app


def flask_encode(req):
    app = flask_app(req)
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=req["now"]):
        resp = app.test_client(use_cookies=False).post("/set", data=req["session"].encode())
    assert resp.status_code == 200, resp.status_code
    return {"cookie": cookie_from(resp.headers.getlist("Set-Cookie"), "session")}


def flask_visit(req):
    app = flask_app(req)
    app.config.update(req.get("settings") or {})

    @app.get("/visit")
    def visit():
        user = flask.session.get("user")
        if req.get("set"):
            flask.session.update(req["set"])
        return json.dumps(user)

    headers = {"Cookie": "session=" + req["cookie"]} if req.get("cookie") else {}
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=req["now"]):
        resp = app.test_client(use_cookies=False).get("/visit", headers=headers)
    answer = set_cookie_answer(resp.headers.getlist("Set-Cookie"), "session")
    answer.update(status=resp.status_code, user=json.loads(resp.get_data(as_text=True) or "null"))
    return answer


def flask_decode(req):
    app = flask_app(req)
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=req["now"]):
        resp = app.test_client(use_cookies=False).get("/read", headers={"Cookie": "session=" + req["cookie"]})
    body = resp.get_data(as_text=True) if resp.status_code == 200 else None
    return {"status": resp.status_code, "session": body, "reset": body == "{}"}


# ----- Starlette ---------------------------------------------------------------
async def st_set(request: Request):
    request.session.update(json.loads(await request.body()))
    return PlainTextResponse("ok")


async def st_read(request: Request):
    return PlainTextResponse(json.dumps(dict(request.session)))


def starlette_client(req, *more_routes):
    kwargs = {"secret_key": req["key"]}
    if "max_age" in req:
        kwargs["max_age"] = req["max_age"]
    app = Starlette(routes=[Route("/set", st_set, methods=["POST"]), Route("/read", st_read), *more_routes],
                    middleware=[Middleware(SessionMiddleware, **kwargs)])
    return TestClient(app, raise_server_exceptions=False)


def starlette_visit(req):
    async def visit(request: Request):
        user = request.session.get("user")
        if req.get("set"):
            request.session.update(req["set"])
        return PlainTextResponse(json.dumps(user))

    headers = {"Cookie": "session=" + req["cookie"]} if req.get("cookie") else {}
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=req["now"]):
        resp = starlette_client(req, Route("/visit", visit)).get("/visit", headers=headers)
    answer = set_cookie_answer(resp.headers.get_list("set-cookie"), "session")
    answer.update(status=resp.status_code, user=json.loads(resp.text or "null"))
    return answer


def starlette_encode(req):
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=req["now"]):
        resp = starlette_client(req).post("/set", content=req["session"].encode())
    assert resp.status_code == 200, resp.status_code
    return {"cookie": cookie_from(resp.headers.get_list("set-cookie"), "session")}


def starlette_decode(req):
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=req["now"]):
        resp = starlette_client(req).get("/read", headers={"Cookie": "session=" + req["cookie"]})
    body = resp.text if resp.status_code == 200 else None
    return {"status": resp.status_code, "session": body, "reset": body == "{}"}


# ----- Django ------------------------------------------------------------------
def django_settings(req):
    over = {"SECRET_KEY": req["key"], "SECRET_KEY_FALLBACKS": req.get("fallbacks") or []}
    if req.get("max_age") is not None:
        over["SESSION_COOKIE_AGE"] = req["max_age"]
    return override_settings(**over)


def django_encode(req):
    with django_settings(req), mock.patch("time.time", return_value=float(req["now"])):
        store = SessionStore()
        for key, value in json.loads(req["session"]).items():
            store[key] = value
        store.save()
        return {"cookie": store.session_key}


def django_decode(req):
    with django_settings(req), mock.patch("time.time", return_value=float(req["now"])):
        store = SessionStore(req["cookie"])
        items = dict(store.items())
        return {"status": 200, "session": json.dumps(items), "reset": store.modified}


def django_visit(req):
    from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessions
    from django.http import HttpResponse
    from django.test import RequestFactory

    def view(request):
        user = request.session.get("user")
        for key, value in (req.get("set") or {}).items():
            request.session[key] = value
        return HttpResponse(json.dumps(user))

    headers = {"HTTP_COOKIE": "sessionid=" + req["cookie"]} if req.get("cookie") else {}
    over = dict(req.get("settings") or {})
    with django_settings(req), override_settings(**over), \
            mock.patch("time.time", return_value=float(req["now"])):
        resp = DjangoSessions(view)(RequestFactory().get("/visit", **headers))
    headers = [morsel.OutputString() for morsel in resp.cookies.values()]
    answer = set_cookie_answer(headers, "sessionid")
    answer.update(status=resp.status_code, user=json.loads(resp.content or b"null"))
    return answer


HANDLERS = {
    ("flask", "encode"): flask_encode, ("flask", "decode"): flask_decode,
    ("starlette", "encode"): starlette_encode, ("starlette", "decode"): starlette_decode,
    ("django", "encode"): django_encode, ("django", "decode"): django_decode,
    ("flask", "visit"): flask_visit, ("starlette", "visit"): starlette_visit,
    ("django", "visit"): django_visit,
}


def main():
    print(json.dumps({"ready": True, "django": django.get_version()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            answer = HANDLERS[(req["fw"], req["op"])](req)
        except Exception:  # noqa: BLE001 - reported to the test, which fails
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
