"""A Flask app that shares its login with the keepsake app in
crates/keepsake/examples/flask_shared_login.rs (see README.md here).

Both use Flask's own session cookie and the same SECRET_KEY.
"""
import os

from flask import Flask, jsonify, request, session

app = Flask(__name__)
app.secret_key = os.environ["SHARED_SECRET_KEY"]
# Old keys separated by commas. Empty entries (a trailing comma) are dropped:
# Flask would verify cookies signed with an empty key, which anyone can make.
fallbacks = os.environ.get("SHARED_SECRET_KEY_FALLBACKS", "")
app.config["SECRET_KEY_FALLBACKS"] = [key for key in fallbacks.split(",") if key]


@app.get("/whoami")
def whoami():
    return jsonify(user=session.get("user"), served_by="flask")


@app.post("/login")
def login():
    user = request.args.get("user")
    if not user:
        return "give ?user=NAME", 400
    session["user"] = user
    return jsonify(user=user)


@app.post("/logout")
def logout():
    session.pop("user", None)
    return jsonify(user=None)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
