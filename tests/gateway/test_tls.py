"""Gateway mode over real TLS, and the gateway's cookies, end to end.

The upstream is a kernelyard server on a FakeBackend (in process) served by
uvicorn over HTTPS that requires a client certificate; the certificates are
made once per module with the ``openssl`` command line (EC keys: fast). No
ssl or socket is mocked: every test makes real handshakes on 127.0.0.1. One
test uses ``openssl s_server`` instead, for a server that answers a missing
client certificate with a TLS alert (uvicorn just hangs up).

The cookie tests put a tiny ASGI middleware in front of a plain-HTTP
upstream: it sets the cookies a load balancer would and records the
``Cookie`` header of every request and WebSocket upgrade it receives.

Found by these tests and fixed: a TLS alert escaped as a raw ssl.SSLError;
httpx kept and sent the gateway's cookies even with accept_cookies off; a
WebSocket that failed to open leaked its inbox; a missing TLS file was not
named.
"""

from __future__ import annotations

import gc
import logging
import re
import shutil
import ssl
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from kernelyard.errors import GatewayError, GatewayUnreachable
from kernelyard.gateway import GatewayBackend, GatewaySettings, hl
from kernelyard.wire import Message

from ..server.conftest import Served, serving
from .conftest import settings_for
from .proxy import CutProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

#: A minimal openssl config: one extensions section per kind of certificate.
OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


#: What OpenSSL says of a certificate our CA did not sign (depends on the chain sent).
VERIFY_MESSAGE = re.compile(
    r"self.signed certificate in certificate chain|unable to get local issuer certificate"
)


@dataclass(frozen=True)
class Pki:
    """Our CA, a server and a client certificate it signed, and a CA unrelated to them
    with a server certificate of its own (also for 127.0.0.1).
    """

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_server_cert: Path
    other_server_key: Path


def make_cert(
    where: Path, name: str, kind: str, subject: str, *, signer: tuple[Path, Path] | None = None
) -> tuple[Path, Path]:
    """A certificate and its EC key (``name.pem``, ``name.key``) of ``kind`` (a section
    of OPENSSL_CONFIG), self-signed or signed by ``signer`` (its certificate and key).
    """
    cert, key = where / f"{name}.pem", where / f"{name}.key"
    argv = [OPENSSL, "req", "-x509", "-new", "-config", str(where / "openssl.cnf")]
    argv += ["-extensions", kind, "-subj", subject, "-days", "2", "-nodes"]
    argv += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    argv += ["-keyout", str(key), "-out", str(cert)]
    if signer is not None:
        argv += ["-CA", str(signer[0]), "-CAkey", str(signer[1])]
    subprocess.run(argv, check=True, capture_output=True, timeout=20)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    where = tmp_path_factory.mktemp("pki")
    (where / "openssl.cnf").write_text(OPENSSL_CONFIG)
    ca = make_cert(where, "ca", "ca", "/CN=kernelyard test CA")
    server = make_cert(where, "server", "server", "/CN=127.0.0.1", signer=ca)
    client = make_cert(where, "client", "client", "/CN=kernelyard test client", signer=ca)
    other_ca = make_cert(where, "other-ca", "ca", "/CN=an unrelated CA")
    other = make_cert(where, "other-server", "server", "/CN=127.0.0.1", signer=other_ca)
    return Pki(ca[0], *server, *client, other_ca[0], *other)


def port_of(served: Served) -> int:
    port = urlsplit(served.url).port
    assert port is not None
    return port


@pytest.fixture
async def tls_upstream(pki: Pki) -> AsyncIterator[Served]:
    """The upstream over HTTPS, requiring a client certificate signed by our CA."""
    options = {
        "ssl_certfile": str(pki.server_cert),
        "ssl_keyfile": str(pki.server_key),
        "ssl_ca_certs": str(pki.ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    async with serving(uvicorn_options=options) as running:
        yield running


def tls_settings(upstream: Served, *, port: int | None = None, **knobs: Any) -> GatewaySettings:
    """settings_for ``upstream`` at https://127.0.0.1:``port`` (the upstream's by default)."""
    url = f"https://127.0.0.1:{port or port_of(upstream)}"
    return settings_for(upstream, url=url, **knobs)


def with_client_cert(pki: Pki, **knobs: Any) -> dict[str, Any]:
    return {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key), **knobs}


def text_of(outputs: list[Message]) -> str:
    return "".join(m.content["text"] for m in outputs if m.msg_type == "stream")


async def specs_start_and_print(settings: GatewaySettings, upstream: Served) -> None:
    """What a gateway user does: kernelspecs, a start, and a cell run over the WebSocket."""
    async with GatewayBackend(settings, environ={}) as gateway:
        specs = await gateway.kernel_specs()
        assert specs.default == "fake"
        kernel_id = await gateway.start_kernel("fake")
        assert kernel_id in upstream.backend.kernels
        await gateway.shutdown_kernel(kernel_id)
    assert settings.ws_url.startswith("wss://127.0.0.1:")
    outputs: list[Message] = []
    async with hl.running_kernel("fake", settings) as (kernel, client):
        assert kernel.kernel_id in upstream.backend.kernels
        reply = await client.execute_interactive("print('over tls')", output_hook=outputs.append)
        assert reply.content["status"] == "ok"
    assert text_of(outputs) == "over tls\n"
    assert upstream.backend.kernels == {}


# -- TLS ------------------------------------------------------------------------------


async def test_our_ca_and_a_client_certificate_work_for_rest_and_wss(
    pki: Pki, tls_upstream: Served
) -> None:
    settings = tls_settings(tls_upstream, ca_certs=str(pki.ca), **with_client_cert(pki))
    await specs_start_and_print(settings, tls_upstream)


async def test_without_a_client_certificate_uvicorn_just_hangs_up(
    pki: Pki, tls_upstream: Served
) -> None:
    """uvicorn (asyncio's TLS) closes the connection without a TLS alert once it sees
    no client certificate: the client cannot tell that from a connection lost, so a
    GET is retried and the error says only that the gateway disconnected.
    """
    async with CutProxy.running(port_of(tls_upstream)) as proxy:
        settings = tls_settings(tls_upstream, port=proxy.port, ca_certs=str(pki.ca))
        async with GatewayBackend(settings, environ={}) as gateway:
            with pytest.raises(GatewayUnreachable) as caught:
                await gateway.kernel_specs()
            assert proxy.accepted == 1 + settings.max_request_retries
            with pytest.raises(GatewayUnreachable) as caught_post:
                await gateway.start_kernel("fake")
    assert str(caught.value) == (
        f"could not connect to the gateway at {settings.url} (GET /api/kernelspecs): "
        "Server disconnected without sending a response."
    )
    assert str(caught_post.value).startswith(
        f"could not connect to the gateway at {settings.url} (POST /api/kernels): "
    )
    assert caught.value.url == settings.url
    assert tls_upstream.backend.kernels == {}


@pytest.fixture
def alerting_upstream(pki: Pki, tmp_path: Path) -> Iterator[int]:
    """``openssl s_server`` requiring a client certificate (it sends the TLS alert
    ``certificate required`` when there is none); its port.
    """
    out = tmp_path / "s_server.out"
    argv = [OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-www", "-Verify", "1"]
    argv += ["-cert", str(pki.server_cert), "-key", str(pki.server_key), "-CAfile", str(pki.ca)]
    with out.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (found := re.search(r"^ACCEPT \S+:(\d+)$", out.read_text(), re.M)):
            assert process.poll() is None, out.read_text()
            assert time.monotonic() < deadline, "openssl s_server did not start"
            time.sleep(0.01)
        yield int(found[1])
    finally:
        process.terminate()
        process.wait(5)


async def test_without_a_client_certificate_a_tls_alert_says_so(
    pki: Pki, alerting_upstream: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"https://127.0.0.1:{alerting_upstream}"
    settings = GatewaySettings(url=url, ca_certs=str(pki.ca))
    with caplog.at_level(logging.INFO, logger="kernelyard.gateway.http"):
        async with GatewayBackend(settings, environ={}) as gateway:
            with pytest.raises(GatewayUnreachable) as caught:
                await gateway.kernel_specs()
    assert str(caught.value).startswith(
        f"could not connect to the gateway at {url} (GET /api/kernelspecs): TLS failed: "
    )
    assert "certificate required" in str(caught.value)
    assert [r for r in caplog.records if r.getMessage().startswith("retrying")] == []


async def test_an_unrelated_ca_rejects_the_certificate_without_retries(
    pki: Pki, tls_upstream: Served
) -> None:
    async with CutProxy.running(port_of(tls_upstream)) as proxy:
        settings = tls_settings(
            tls_upstream, port=proxy.port, ca_certs=str(pki.other_ca), **with_client_cert(pki)
        )
        assert settings.max_request_retries == 2  # a GET is retried on other failures
        async with GatewayBackend(settings, environ={}) as gateway:
            with pytest.raises(GatewayUnreachable) as caught:
                await gateway.kernel_specs()
            assert proxy.accepted == 1
            with pytest.raises(GatewayUnreachable) as caught_post:
                await gateway.start_kernel("fake")
            assert proxy.accepted == 2
    prefix = (
        f"could not connect to the gateway at {settings.url} (GET /api/kernelspecs): "
        "its TLS certificate was rejected: "
    )
    assert str(caught.value).startswith(prefix)
    # OpenSSL's verify message, without its "[SSL: ...]" code: uvicorn's OpenSSL sends our
    # CA along (it is in the server's store), so it is a self-signed one in the chain
    assert VERIFY_MESSAGE.fullmatch(str(caught.value).removeprefix(prefix))
    assert "its TLS certificate was rejected" in str(caught_post.value)
    assert tls_upstream.backend.kernels == {}


@asynccontextmanager
async def websocket_elsewhere(pki: Pki, tls_upstream: Served) -> AsyncIterator[GatewaySettings]:
    """Settings for REST to ``tls_upstream`` (which our CA vouches for) and the WebSocket
    to another server, whose certificate only the unrelated CA vouches for.
    """
    other = {"ssl_certfile": str(pki.other_server_cert), "ssl_keyfile": str(pki.other_server_key)}
    async with serving(uvicorn_options=other) as elsewhere:
        ws_url = f"wss://127.0.0.1:{port_of(elsewhere)}"
        yield tls_settings(
            tls_upstream, ca_certs=str(pki.ca), ws_url=ws_url, **with_client_cert(pki)
        )
    assert elsewhere.backend.kernels == {}


def leaked_streams() -> list[str]:
    """The ResourceWarnings of anyio streams that a garbage collection reaps now."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [str(w.message) for w in caught if "MemoryObject" in str(w.message)]


async def test_the_websocket_checks_the_certificate_too(pki: Pki, tls_upstream: Served) -> None:
    """The kernel starts over REST; its channels do not open: wss verifies as https does."""
    async with websocket_elsewhere(pki, tls_upstream) as settings:
        with pytest.raises(GatewayUnreachable) as caught:
            async with hl.running_kernel("fake", settings):
                pass
    message = str(caught.value)
    assert message.startswith(
        f"could not connect to the gateway at {settings.url} (WebSocket of kernel "
    )
    assert "its TLS certificate was rejected: " in message  # as REST says it
    assert tls_upstream.backend.kernels == {}  # started, then deleted


async def test_a_websocket_that_does_not_open_leaves_nothing_open(
    pki: Pki, tls_upstream: Served
) -> None:
    leaked_streams()
    async with (
        websocket_elsewhere(pki, tls_upstream) as settings,
        GatewayBackend(settings, environ={}) as gateway,
    ):
        kernel_id = await gateway.start_kernel("fake")
        with pytest.raises(GatewayUnreachable):
            async with gateway.open_channels(kernel_id):
                pass
    assert leaked_streams() == []


async def test_validate_cert_false_accepts_a_certificate_no_ca_vouches_for(
    pki: Pki, tls_upstream: Served
) -> None:
    settings = tls_settings(
        tls_upstream, ca_certs=str(pki.other_ca), validate_cert=False, **with_client_cert(pki)
    )
    await specs_start_and_print(settings, tls_upstream)


async def test_a_missing_client_certificate_file_fails_on_open(
    pki: Pki, tls_upstream: Served, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-client.pem"
    settings = tls_settings(tls_upstream, ca_certs=str(pki.ca), client_cert=str(missing))
    gateway = GatewayBackend(settings, environ={})  # construction reads no file
    with pytest.raises(GatewayError) as caught:
        async with gateway:
            pass
    assert type(caught.value) is GatewayError
    # today: "...cannot be used: [Errno 2] No such file or directory" (see the next test)
    assert str(caught.value).startswith("the TLS files for the gateway cannot be used: ")
    assert caught.value.url == settings.url


@pytest.mark.parametrize("setting", ["client_cert", "client_key", "ca_certs"])
async def test_a_missing_tls_file_is_named(
    pki: Pki, tls_upstream: Served, tmp_path: Path, setting: str
) -> None:
    missing = str(tmp_path / f"no-such-{setting}.pem")
    knobs = {**with_client_cert(pki, ca_certs=str(pki.ca)), setting: missing}
    with pytest.raises(GatewayError) as caught:
        async with GatewayBackend(tls_settings(tls_upstream, **knobs), environ={}):
            pass
    assert setting in str(caught.value)
    assert missing in str(caught.value)


# -- cookies ----------------------------------------------------------------------------

#: The cookies the LoadBalancer sets (the upstream sets its own too: auth, _xsrf).
LB_COOKIES = frozenset({"lb", "tmp", "old"})


@dataclass(frozen=True)
class Seen:
    """A request (``http``) or WebSocket upgrade (``websocket``) the upstream received,
    with the cookies it carried.
    """

    kind: str
    method: str
    path: str
    cookies: dict[str, str]

    @property
    def ours(self) -> dict[str, str]:
        """The LoadBalancer's cookies it carried."""
        return {k: v for k, v in self.cookies.items() if k in LB_COOKIES}


@dataclass
class LoadBalancer:
    """ASGI middleware: adds ``set_cookie`` to every HTTP response, records each request."""

    app: Callable[..., Any]
    set_cookie: list[str] = field(default_factory=lambda: ["lb=node1; Path=/"])
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookie = SimpleCookie()
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookie.load(value.decode("latin-1"))
        cookies = {name: morsel.value for name, morsel in cookie.items()}
        self.seen.append(Seen(scope["type"], scope.get("method", "GET"), scope["path"], cookies))
        set_cookie = [(b"set-cookie", c.encode("latin-1")) for c in self.set_cookie]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *set_cookie]}
            await send(message)

        await self.app(scope, receive, sending)


@asynccontextmanager
async def balanced() -> AsyncIterator[tuple[Served, LoadBalancer]]:
    """A plain-HTTP upstream behind a LoadBalancer."""
    wrapped: list[LoadBalancer] = []

    def wrap(app: Any) -> LoadBalancer:
        wrapped.append(LoadBalancer(app))
        return wrapped[0]

    async with serving(wrap_app=wrap) as upstream:
        yield upstream, wrapped[0]


async def a_session(upstream: Served, **knobs: Any) -> str:
    """Kernelspecs, a start, a cell run over the kernel's WebSocket, a delete; the id."""
    async with GatewayBackend(settings_for(upstream, **knobs), environ={}) as gateway:
        await gateway.kernel_specs()
        kernel_id = await gateway.start_kernel("fake")
        outputs: list[Message] = []
        async with gateway.client(kernel_id) as client:
            await client.wait_for_ready(timeout=10)
            await client.execute_interactive("print('pinned')", output_hook=outputs.append)
        assert text_of(outputs) == "pinned\n"
        await gateway.shutdown_kernel(kernel_id)
    return kernel_id


def asked(seen: list[Seen]) -> list[tuple[str, str, str]]:
    return [(s.kind, s.method, s.path) for s in seen]


async def test_accepted_cookies_go_back_on_every_request_and_the_upgrade() -> None:
    async with balanced() as (upstream, lb):
        kernel_id = await a_session(upstream, accept_cookies=True)
    first, *later = lb.seen
    assert (first.method, first.path, first.cookies) == ("GET", "/api/kernelspecs", {})
    assert asked(later) == [
        ("http", "POST", "/api/kernels"),
        ("websocket", "GET", f"/api/kernels/{kernel_id}/channels"),
        ("http", "DELETE", f"/api/kernels/{kernel_id}"),
    ]
    assert [s.ours for s in later] == [{"lb": "node1"}] * 3
    # the upstream's own cookies come back too, the WebSocket upgrade included
    assert all("_xsrf" in s.cookies for s in later)


async def test_cookies_not_accepted_are_not_sent_on_the_websocket_upgrade() -> None:
    async with balanced() as (upstream, lb):
        kernel_id = await a_session(upstream, accept_cookies=False)
    (upgrade,) = [s for s in lb.seen if s.kind == "websocket"]
    assert upgrade.path == f"/api/kernels/{kernel_id}/channels"
    assert upgrade.cookies == {}


async def test_cookies_not_accepted_are_not_sent_on_rest_requests() -> None:
    async with balanced() as (upstream, lb):
        kernel_id = await a_session(upstream, accept_cookies=False)
    rest = [s for s in lb.seen if s.kind == "http"]
    assert asked(rest) == [
        ("http", "GET", "/api/kernelspecs"),
        ("http", "POST", "/api/kernels"),
        ("http", "DELETE", f"/api/kernels/{kernel_id}"),
    ]
    assert [s.cookies for s in rest] == [{}] * 3


async def test_expired_and_deleted_cookies_are_not_sent_back() -> None:
    async with balanced() as (upstream, lb):
        settings = settings_for(upstream, accept_cookies=True)
        async with GatewayBackend(settings, environ={}) as gateway:
            lb.set_cookie = ["lb=node1; Path=/", "tmp=1; Path=/"]
            await gateway.list_kernels()
            lb.set_cookie = [
                "tmp=gone; Path=/; Max-Age=0",  # deletes tmp
                "old=1; Path=/; Expires=Wed, 21 Oct 2015 07:28:00 GMT",  # born expired
            ]
            await gateway.list_kernels()
            lb.set_cookie = []
            await gateway.list_kernels()
            kernel_id = await gateway.start_kernel("fake")
            async with gateway.open_channels(kernel_id):
                pass
            await gateway.shutdown_kernel(kernel_id)
    assert [s.kind for s in lb.seen] == ["http"] * 4 + ["websocket", "http"]
    assert [s.ours for s in lb.seen] == [
        {},
        {"lb": "node1", "tmp": "1"},
        *[{"lb": "node1"}] * 4,  # neither tmp (deleted) nor old (expired) comes back
    ]
