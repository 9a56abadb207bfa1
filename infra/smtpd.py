"""A real SMTPS server for tests: aiosmtpd with implicit TLS and AUTH PLAIN/LOGIN.

Any user logs in with the password "secret". Each accepted message is stored in SPOOL as
<id>.eml (the raw bytes) with <id>.env.json beside it (mail_from, rcpt_tos, auth_user), written
last so that a reader never sees an envelope without its message.

Faults are chosen by the AUTH user name, so that parallel tests, each with its own user, never
interfere:
  fail535         any password is refused: 535 5.7.8 at AUTH
  block571        554 5.7.1 at MAIL FROM (the provider blocks the sending IP address)
  block571auth    the same 554 5.7.1 at AUTH, whatever the password
  block571rcpt    the same 554 5.7.1 at RCPT TO, whatever the recipient
  busy452         452 4.3.1 at MAIL FROM on the first attempt of that user, then accepted
  stall           no answer to the end of DATA for --stall seconds, then stored and accepted (if
                  the client is still there)
  stallmail       no answer to MAIL FROM for --stall seconds (a client that gives up sent nothing)
  dropafterdata   the message is stored, then the connection is dropped without an answer to
                  the end of DATA: the client cannot know that the message left
  stallafterdata  the message is stored, then no answer to the end of DATA for --stall seconds,
                  then the connection is dropped
  toobig          552 5.3.4 at the end of DATA
  flakydrop       like dropafterdata for about one message in three, at random (soak tests)
and by recipient: an address containing "unknown" gets 550 5.1.1 at RCPT TO.
"""

import argparse
import asyncio
import json
import logging
import os
import random
import re
import signal
import ssl
import uuid
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=10465)
ap.add_argument("--cert", required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--spool", required=True)
ap.add_argument("--stall", type=float, default=30.0)
args = ap.parse_args()
os.makedirs(args.spool, exist_ok=True)
busy_seen = set()
# Aruba's words when it turns away the client's IP address.
BLOCKED_571 = "554 5.7.1 Indirizzo IP bloccato: connessione rifiutata dal gestore"


def user_of(session):
    auth = session.auth_data
    return auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else ""


def blocked_at(user):
    """The step at which `user` gets 554 5.7.1: "auth", "rcpt" or "mail" (plain block571)."""
    m = re.search(r"block571(auth|rcpt)?", user)
    return (m.group(1) or "mail") if m else None


def stalled_at(user):
    """When `user` gets no answer: "mail", "afterdata" (once stored) or "data" (plain stall)."""
    m = re.search(r"stall(mail|afterdata)?", user)
    return (m.group(1) or "data") if m else None


def drop(server):
    """Ends the session at once, without a word (not even TLS close_notify)."""
    server.transport.abort()


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    login = auth_data.login.decode("utf-8", "replace")
    if blocked_at(login) == "auth":
        return AuthResult(success=False, handled=False, message=BLOCKED_571)
    ok = "fail535" not in login and auth_data.password == b"secret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class Handler:
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        user = user_of(session)
        if blocked_at(user) == "mail":
            return BLOCKED_571
        if stalled_at(user) == "mail":
            await asyncio.sleep(args.stall)
        if "busy452" in user and user not in busy_seen:
            busy_seen.add(user)
            return "452 4.3.1 Insufficient system storage"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if blocked_at(user_of(session)) == "rcpt":
            return BLOCKED_571
        if "unknown" in address:
            return f"550 5.1.1 <{address}>: utente sconosciuto"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        user = user_of(session)
        if stalled_at(user) == "data":
            await asyncio.sleep(args.stall)
        if "toobig" in user:
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        key = uuid.uuid4().hex
        with open(os.path.join(args.spool, key + ".eml"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "auth_user": user}
        tmp = os.path.join(args.spool, key + ".env.json.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.rename(tmp, os.path.join(args.spool, key + ".env.json"))
        if stalled_at(user) == "afterdata":
            await asyncio.sleep(args.stall)
        flaky = "flakydrop" in user and random.random() < 1 / 3
        if stalled_at(user) == "afterdata" or "dropafterdata" in user or flaky:
            drop(server)
            # connection_lost cancels this handler: nothing is ever pushed.
            await asyncio.Event().wait()
        return "250 2.0.0 OK queued as " + key


# aiosmtpd counts only STARTTLS as TLS: with implicit TLS, auth_require_tls must be False (the
# socket is TLS anyway), and it warns about that on every connection.
warnings.simplefilter("ignore")
logging.getLogger("mail.log").setLevel(logging.ERROR)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(args.cert, args.key)
controller = Controller(
    Handler(),
    hostname=args.host,
    port=args.port,
    ssl_context=ctx,
    server_hostname="localhost",
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=False,
)
controller.start()
print(f"SMTPS listening on {args.host}:{args.port}, spool {args.spool}", flush=True)
signal.sigwait({signal.SIGINT, signal.SIGTERM})
controller.stop()
