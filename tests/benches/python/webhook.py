"""The interactions endpoint of the original request in Python: Flask verifying Discord's
Ed25519 signature with PyNaCl, answering PING with PONG and a command with a message (type 4).
What issue #18 compares Disco's webhook path (ingress, worker, RabbitMQ) with, in the same run.

    DISCORD_PUBLIC_KEY=<hex> gunicorn -k gthread -w 2 --threads 16 -b 127.0.0.1:PORT webhook:app
"""

import os

from flask import Flask, abort, jsonify, request
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

app = Flask(__name__)
verify_key = VerifyKey(bytes.fromhex(os.environ["DISCORD_PUBLIC_KEY"]))


@app.post("/interactions")
def interactions():
    signature = request.headers.get("X-Signature-Ed25519", "")
    timestamp = request.headers.get("X-Signature-Timestamp", "")
    body = request.get_data()
    try:
        verify_key.verify(timestamp.encode() + body, bytes.fromhex(signature))
    except (BadSignatureError, ValueError):
        abort(401, "invalid request signature")
    interaction = request.get_json()
    if interaction["type"] == 1:
        return jsonify({"type": 1})
    return jsonify(
        {
            "type": 4,
            "data": {
                "tts": False,
                "content": "pong!",
                "embeds": [],
                "allowed_mentions": {"parse": []},
            },
        }
    )
