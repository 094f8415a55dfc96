"""Flask's default session (a signed cookie, itsdangerous) under gunicorn.

GET /incr: count + 1 in the session (the cookie is re-signed and re-sent).
GET /read: the count (session unchanged, no Set-Cookie).
"""

from flask import Flask, session

app = Flask(__name__)
app.secret_key = "benchmark-only-secret"


@app.get("/incr")
def incr():
    session["count"] = session.get("count", 0) + 1
    return str(session["count"])


@app.get("/read")
def read():
    return str(session.get("count", 0))
