"""A real HTTPS webhook receiver on 127.0.0.1 for tests: a private CA, a certificate for ``receiver.test`` and
``localhost`` (no IP in it, so clients must verify the name), and a server that records requests and answers a
programmable sequence of replies."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --- a private CA and a certificate for receiver.test (no IP in it: verification must use the name) --------

def _cert(subject: str, key, issuer: x509.Name, signer, ca: bool, san: tuple[str, ...] = ()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    if san:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return builder.sign(signer, hashes.SHA256())


def make_pki(d):
    """A private CA (``ca.pem``) and its certificate for receiver.test and localhost (``server.pem``/``.key``)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]), ca_key, True)
    server = _cert("receiver.test", key, ca.subject, ca_key, False, san=("receiver.test", "localhost"))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- the receiver: records requests, answers a programmable sequence of replies ---------------------------

@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body_size: int = 0
    delay: float = 0.0  # before answering
    chunk_delay: float = 0.0  # between 64 KiB chunks of the body


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.request.settimeout(10)
        self.request.do_handshake()  # here, in the request thread, so a failing client cannot stall accept()
        super().setup()

    def do_POST(self):
        rx: Receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        rx.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        reply = rx.replies.popleft() if rx.replies else Reply()
        rx.stop.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in {**reply.headers, "content-length": str(reply.body_size)}.items():
            self.send_header(name, value)
        self.end_headers()
        sent = 0
        while sent < reply.body_size and not rx.stop.is_set():
            chunk = min(65536, reply.body_size - sent)
            self.wfile.write(b"x" * chunk)
            sent += chunk
            rx.stop.wait(reply.chunk_delay)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads, block_on_close = True, False

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.receiver.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass  # clients that reject our certificate or hang up early are part of the tests


class Receiver:
    def __init__(self, pki):
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.sni: list[str | None] = []
        self.stop = threading.Event()
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
        self.ctx.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.receiver = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, host: str = "receiver.test", path: str = "/hook") -> str:
        return f"https://{host}:{self.port}{path}"


@pytest.fixture
def receiver(pki):
    rx = Receiver(pki)
    rx.thread.start()
    yield rx
    rx.stop.set()
    rx.server.shutdown()
    rx.server.server_close()
