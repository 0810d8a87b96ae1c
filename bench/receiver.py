"""A tiny HTTPS webhook receiver on 127.0.0.1 for comparison 5: a private CA made with ``cryptography``, a
certificate for ``localhost``, and a server that notes when each job's callback arrived (wall clock, so it
compares with the store's ``completed_at``)."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(folder: Path) -> Path:
    """Writes ca.pem, server.pem and server.key into ``folder``; returns the CA bundle's path."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject: str, public_key, issuer: str):
        return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False))

    ca = (builder("Bench CA", ca_key.public_key(), "Bench CA")
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (builder("localhost", key.public_key(), "Bench CA")
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / "ca.pem"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.request.settimeout(10)
        self.request.do_handshake()  # in the request thread: a slow client cannot stall accept()
        super().setup()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        arrived = time.time()
        try:
            job_id = json.loads(body)["job_id"]
        except (ValueError, KeyError, TypeError):
            job_id = None
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
        if job_id is not None:
            self.server.receiver.arrived(job_id, arrived)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads, block_on_close = True, False

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.receiver.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass


class Receiver:
    """``with Receiver(pki) as rx:`` serves on 127.0.0.1; ``rx.url`` is the callback URL (host localhost)."""

    def __init__(self, pki: Path):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        self.received: dict[str, float] = {}
        self._cond = threading.Condition()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.receiver = self
        self.url = f"https://localhost:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def arrived(self, job_id: str, at: float) -> None:
        with self._cond:
            self.received.setdefault(job_id, at)  # a redelivery keeps the first arrival
            self._cond.notify_all()

    def wait_for(self, job_id: str, within: float) -> float | None:
        """The arrival time of ``job_id``'s callback, or None after ``within`` seconds (call from a thread)."""
        with self._cond:
            self._cond.wait_for(lambda: job_id in self.received, timeout=within)
            return self.received.get(job_id)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
