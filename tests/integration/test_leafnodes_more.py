"""Leaf nodes, the rest: configuration verdicts compared with ``nats-server -t`` and its start-up
refusals, reload (what nats-server refuses, certificate rotation on leafnodes.tls, remotes
added and removed), loop detection, and a hub that is part of a cluster."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from tests.helpers.certs import CertSet, make_cert_set
from tests.helpers.servers import ServerProcess, free_port, nats_server_binary

from pynatsd.config.load import load_options
from pynatsd.errors import ConfigError


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("leaf-certs2"))


# -- configuration ---------------------------------------------------------------------------------

# (config body, the gist both servers' -t verdicts must contain; None: valid)
CHECKS: list[tuple[str, str | None]] = [
    ('leafnodes { port: -1, foo: 1 }', 'unknown field "foo"'),
    ('leafnodes { remotes [ { url: "::bad" } ] }', 'error parsing leafnode url ["::bad"]'),
    ('leafnodes { port: -1, authorization { user: u, password: p, users [ {user: a, password: b} ] } }',
     "can not have a single user/pass and a users array"),
    ('leafnodes { port: -1, authorization { token: abc } }', 'unknown field "token"'),
    ('leafnodes { remotes [ { url: "nats://127.0.0.1:1", bogus: 1 } ] }', 'unknown field "bogus"'),
    ('leafnodes { remotes [ { urls: 5 } ] }', "Expected remote leafnode url to be an array or string, got 5"),
    ('leafnodes { remotes: 5 }', "Expected remotes field to be an array"),
    ('leafnodes: 5', "Expected map to define a leafnode"),
    ('leafnodes { port: -1, min_version: "abc" }', "invalid leafnode's minimum version: invalid semver"),
    ('leafnodes { port: -1, authorization { users [ {user: a, password: b, permissions: {publish: foo}} ] } }',
     'unknown field "permissions"'),
    ('leafnodes { port: -1, min_version: "2.8.0", reconnect: "2s" }', None),
    ('leafnodes { listen: "127.0.0.1:-1", no_advertise: true, advertise: "h:1" }', None),
    ('leafnodes { remotes [ { url: "nats-leaf://u:p@127.0.0.1:1", account: "$G", deny_imports: ["a"], deny_exports: "b" } ] }', None),
    ('leafnodes { port: -1, authorization { users [ {user: a, password: b, account: "$G"} ], timeout: 3 } }', None),
]


def nats_verdict(path: Path) -> tuple[bool, str]:
    p = subprocess.run([nats_server_binary(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=20)
    return p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(("body", "gist"), CHECKS)
def test_config_verdicts_match_nats_server(tmp_path: Path, body: str, gist: str | None) -> None:
    path = tmp_path / "t.conf"
    path.write_text(body + "\n")
    ok, text = nats_verdict(path)
    try:
        opts = load_options(str(path))
        ours_ok, ours = True, ""
        assert opts.leafnodes is not None  # taken, not ignored
    except ConfigError as e:
        ours_ok, ours = False, str(e)
    assert ours_ok == ok, (text, ours)
    if gist is not None:
        assert gist in text and gist in ours, (text, ours)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ('leafnodes { remotes [ { url: "nats://127.0.0.1:1", account: "X" } ] }',
         'cannot find local account "X" specified in leafnode remote'),
        ('leafnodes { port: -1, authorization { users [ {user: a, password: b, account: X} ] } }',
         'cannot find local account "X" specified in leafnode authorization'),
    ],
)
def test_start_refusals_match_nats_server(tmp_path: Path, body: str, text: str) -> None:
    path = tmp_path / "t.conf"
    path.write_text("listen: 127.0.0.1:-1\n" + body + "\n")
    for cmd in ([nats_server_binary()], [sys.executable, "-m", "pynatsd"]):
        p = subprocess.run([*cmd, "-c", str(path)], capture_output=True, text=True, timeout=20)
        assert p.returncode != 0 and text in p.stdout + p.stderr, (cmd, p.stdout, p.stderr)


def test_unsupported_remote_parts_are_refused_at_start(tmp_path: Path) -> None:
    for body in (
        'leafnodes { remotes [ { url: "nats://127.0.0.1:1", credentials: "/x.creds" } ] }',
        'leafnodes { remotes [ { url: "ws://127.0.0.1:1" } ] }',
    ):
        path = tmp_path / "t.conf"
        path.write_text(body + "\n")
        with pytest.raises(ConfigError, match="not supported by pynatsd"):
            load_options(str(path))


# -- reload ------------------------------------------------------------------------------------------


def leaf_cert_sha(port: int) -> str:
    """The certificate the leafnode port serves (INFO in plaintext, then TLS)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"INFO ")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return hashlib.sha256(der).hexdigest()


def wait_log(srv: ServerProcess, needle: str, start: int = 0, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = (srv.stdout() + srv.stderr())[start:]
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not logged:\n{srv.logs()}")
        time.sleep(0.05)


def logsize(srv: ServerProcess) -> int:
    return len(srv.stdout() + srv.stderr())


def test_reload_refusals_and_cert_rotation(certs: CertSet) -> None:
    lp = free_port()

    def conf(cert: str, key: str, extra: str = "", pw: str = "b") -> str:
        return (
            f'leafnodes {{ listen: "127.0.0.1:{lp}"\n{extra}\n'
            f' authorization {{ users [ {{user: a, password: {pw}}} ] }}\n'
            f' tls {{ cert_file: "{cert}", key_file: "{key}" }} }}\n'
        )

    base = conf(certs.server.cert_file, certs.server.key_file)
    results: dict[str, list[str]] = {}
    for impl in ("nats", "pynatsd"):
        with ServerProcess(impl, base) as srv:
            got = []
            for changed in (
                conf(certs.server.cert_file, certs.server.key_file, pw="c"),
                conf(certs.server.cert_file, certs.server.key_file, extra="reconnect: 5"),
                conf(certs.server.cert_file, certs.server.key_file, extra='advertise: "x:1"'),
            ):
                n = logsize(srv)
                srv.reload(changed)
                text = wait_log(srv, "Failed to reload server configuration", n)
                line = next(ln for ln in text.splitlines() if "Failed to reload" in ln)
                got.append(line.split("config reload not supported for ", 1)[1].split(":")[0:2][1].strip())
            results[impl] = got
            # certificate rotation: new handshakes get the new certificate
            before = leaf_cert_sha(lp)
            assert before == certs.server.cert_sha256
            n = logsize(srv)
            srv.reload(conf(certs.server_rsa.cert_file, certs.server_rsa.key_file))
            wait_log(srv, "Reloaded server configuration", n)
            assert leaf_cert_sha(lp) == certs.server_rsa.cert_sha256
    # the same field named by both: Users, ReconnectInterval, Advertise
    assert results["pynatsd"] == results["nats"] == ['field "Users"', 'field "ReconnectInterval"', 'field "Advertise"']


async def test_reload_adds_and_removes_remotes() -> None:
    lp = free_port()
    with ServerProcess("nats", f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\nhttp: {(hh := free_port())}\n') as hub:
        with ServerProcess("pynatsd", "leafnodes { remotes [] }\n") as spoke:
            assert spoke.running
            from tests.integration.test_leafnodes import leafz

            assert leafz(hh)["leafnodes"] == 0
            spoke.reload(f'leafnodes {{ remotes [ {{ url: "nats-leaf://127.0.0.1:{lp}" }} ] }}\n')
            await wait_until(lambda: leafz(hh)["leafnodes"] == 1, "the added remote to connect")
            spoke.reload("leafnodes { remotes [] }\n")
            await wait_until(lambda: leafz(hh)["leafnodes"] == 0, "the removed remote to close")
            assert hub.running


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- loops and clusters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["nats", "pynatsd"])
def test_loop_is_detected(other: str) -> None:
    """Two servers each dialing the other: the $LDS subject comes back and the loop is named."""
    pa, pb = free_port(), free_port()
    a = ServerProcess("pynatsd", f'leafnodes {{ listen: "127.0.0.1:{pa}"\n remotes [ {{ url: "nats-leaf://127.0.0.1:{pb}" }} ] }}\n')
    b = ServerProcess(other, f'leafnodes {{ listen: "127.0.0.1:{pb}"\n remotes [ {{ url: "nats-leaf://127.0.0.1:{pa}" }} ] }}\n')
    with a, b:
        deadline = time.monotonic() + 15
        while "Loop detected for leafnode account=" not in a.stdout() + a.stderr() + b.stdout() + b.stderr():
            assert time.monotonic() < deadline, a.logs() + b.logs()
            time.sleep(0.05)


async def test_hub_in_a_cluster() -> None:
    """spoke (nats-server) -> pynatsd hub -> route -> nats-server node, and back."""
    cp1, cp2, lp = free_port(), free_port(), free_port()
    n1 = ServerProcess(
        "pynatsd",
        f'cluster {{ name: C, listen: "127.0.0.1:{cp1}", routes: ["nats-route://127.0.0.1:{cp2}"] }}\n'
        f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n',
    )
    n2 = ServerProcess(
        "nats",
        f'cluster {{ name: C, listen: "127.0.0.1:{cp2}", pool_size: -1, routes: ["nats-route://127.0.0.1:{cp1}"] }}\n',
    )
    spoke = ServerProcess("nats", f'leafnodes {{ remotes [ {{ url: "nats-leaf://127.0.0.1:{lp}" }} ] }}\n')
    with n1, n2, spoke:
        c2 = await nats.connect(n2.url)
        cs = await nats.connect(spoke.url)
        try:
            got: asyncio.Queue[Any] = asyncio.Queue()

            async def cb(m: Any) -> None:
                await got.put(m)

            await c2.subscribe("far", cb=cb)
            await cs.subscribe("near", cb=cb)
            await c2.flush()
            await cs.flush()
            for pub, subj in ((cs, "far"), (c2, "near")):
                deadline = time.monotonic() + 15
                while True:
                    await pub.publish(subj, b"x")
                    await pub.flush()
                    try:
                        m = await asyncio.wait_for(got.get(), 0.25)
                        assert m.subject == subj
                        break
                    except TimeoutError:
                        assert time.monotonic() < deadline, f"{subj}: " + n1.logs() + spoke.logs()
            # exactly once each
            while not got.empty():
                got.get_nowait()
            await cs.publish("far", b"once")
            await c2.publish("near", b"once")
            await cs.flush()
            await c2.flush()
            a = await asyncio.wait_for(got.get(), 5)
            b = await asyncio.wait_for(got.get(), 5)
            assert {a.subject, b.subject} == {"far", "near"}
            await c2.flush()
            await cs.flush()
            assert got.empty()
        finally:
            await c2.close()
            await cs.close()


# -- the README's configurations -----------------------------------------------------------------------


def readme_leaf_blocks() -> list[str]:
    """The code blocks of README.md's "Leaf nodes" section, in order (hub, spoke)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("\n## Leaf nodes\n", 1)[1].split("\n## ", 1)[0]
    return [b.split("\n", 1)[1] for b in section.split("```")[1::2]]


@pytest.mark.parametrize("spoke_impl", ["pynatsd", "nats"])
async def test_readme_hub_and_spoke_work_as_written(tmp_path: Path, spoke_impl: str) -> None:
    hub_text, spoke_text = readme_leaf_blocks()
    assert "verify_and_map: true" in hub_text and "alice-cert.pem" in spoke_text
    subprocess.run([sys.executable, "-m", "pynatsd", "certs", "certs", "--client", "alice", "--client", "bob"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)
    lp = free_port()  # the one change: a free port instead of 7422, so parallel runs do not collide
    dirs = []
    for name in ("hub", "spoke"):
        d = tmp_path / name
        d.mkdir()
        (d / "certs").symlink_to(tmp_path / "certs")
        dirs.append(d)
    hub = ServerProcess("pynatsd", hub_text.replace("7422", str(lp)), workdir=dirs[0])
    spoke = ServerProcess(spoke_impl, spoke_text.replace("7422", str(lp)), workdir=dirs[1])
    with hub, spoke:
        ch = await nats.connect(hub.url)
        cs = await nats.connect(spoke.url)
        try:
            sub = await ch.subscribe("orders.>")
            await ch.flush()
            deadline = time.monotonic() + 15
            while True:
                await cs.publish("orders.1", b"from the spoke")
                await cs.flush()
                try:
                    m = await sub.next_msg(timeout=0.25)
                    break
                except nats.errors.TimeoutError:
                    assert time.monotonic() < deadline, hub.logs() + spoke.logs()
            assert m.data == b"from the spoke"
        finally:
            await ch.close()
            await cs.close()
    # and a spoke without alice's certificate is refused
    spoke_no_cert = "\n".join(ln for ln in spoke_text.splitlines() if "alice" not in ln)
    hub = ServerProcess("pynatsd", hub_text.replace("7422", str(lp)), workdir=dirs[0])
    with hub, ServerProcess("pynatsd", spoke_no_cert.replace("7422", str(lp)), workdir=dirs[1]) as spoke:
        wait_log(hub, "TLS leafnode handshake error")
        assert spoke.running


# -- permissions, handshake_first, bcrypt, monitoring shapes ----------------------------------------------


async def cross(pub: Any, subj: str, sub: Any, timeout: float = 15.0) -> None:
    """Publish ``subj`` until ``sub`` gets it (interest crosses the leaf asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        await pub.publish(subj, b"x")
        await pub.flush()
        try:
            m = await sub.next_msg(timeout=0.25)
            assert m.subject == subj
            return
        except nats.errors.TimeoutError:
            assert time.monotonic() < deadline, f"{subj} never crossed"


@pytest.mark.parametrize("spoke_impl", ["nats", "pynatsd"])
async def test_deny_imports_and_exports(spoke_impl: str) -> None:
    lp = free_port()
    remote = (f'{{ url: "nats-leaf://127.0.0.1:{lp}", deny_exports: ["secret.>"], '
              'deny_imports: ["private.>"] }')
    with ServerProcess("pynatsd", f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n') as hub, \
            ServerProcess(spoke_impl, f"leafnodes {{ remotes [ {remote} ] }}\n") as spoke:
        ch = await nats.connect(hub.url)
        cs = await nats.connect(spoke.url)
        try:
            at_hub = await ch.subscribe(">")
            at_spoke = await cs.subscribe(">")
            await cross(cs, "open.a", at_hub)
            await cs.publish("secret.a", b"no")  # deny_exports: stays on the spoke
            await cs.publish("open.b", b"yes")
            await cs.flush()
            assert (await at_hub.next_msg(timeout=5)).subject == "open.b"
            while at_spoke.pending_msgs:  # the spoke's own subscriber saw its publishes
                await at_spoke.next_msg(timeout=1)
            await cross(ch, "open.c", at_spoke)
            await ch.publish("private.a", b"no")  # deny_imports: the spoke does not take it
            await ch.publish("open.d", b"yes")
            await ch.flush()
            while True:
                m = await at_spoke.next_msg(timeout=5)
                assert m.subject != "private.a"
                if m.subject == "open.d":
                    break
        finally:
            await ch.close()
            await cs.close()


@pytest.mark.parametrize(("hub_impl", "spoke_impl"), [("pynatsd", "nats"), ("nats", "pynatsd")])
async def test_tls_handshake_first(certs: CertSet, hub_impl: str, spoke_impl: str) -> None:
    lp = free_port()
    hub_conf = (f'leafnodes {{ listen: "127.0.0.1:{lp}"\n tls {{ cert_file: "{certs.server.cert_file}", '
                f'key_file: "{certs.server.key_file}", handshake_first: true }} }}\n')
    spoke_conf = (f'leafnodes {{ remotes [ {{ url: "nats-leaf://localhost:{lp}", '
                  f'tls {{ ca_file: "{certs.ca.cert_file}", handshake_first: true }} }} ] }}\n')
    with ServerProcess(hub_impl, hub_conf) as hub, ServerProcess(spoke_impl, spoke_conf) as spoke:
        ch = await nats.connect(hub.url)
        cs = await nats.connect(spoke.url)
        try:
            await cross(cs, "tls.first", await ch.subscribe("tls.>"))
        finally:
            await ch.close()
            await cs.close()


async def test_bcrypt_leaf_user() -> None:
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    lp = free_port()
    hub_conf = f'leafnodes {{ listen: "127.0.0.1:{lp}"\n authorization {{ users [ {{ user: leaf, password: "{hashed}" }} ] }} }}\n'
    with ServerProcess("pynatsd", hub_conf) as hub, ServerProcess(
        "nats", f'leafnodes {{ remotes [ {{ url: "nats-leaf://leaf:s3cret@127.0.0.1:{lp}" }} ] }}\n'
    ) as spoke:
        ch = await nats.connect(hub.url)
        cs = await nats.connect(spoke.url)
        try:
            await cross(cs, "b.1", await ch.subscribe("b.>"))
        finally:
            await ch.close()
            await cs.close()


async def test_monitoring_shapes_match_nats_server() -> None:
    import json
    import urllib.request

    def get(port: int, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310 - loopback
            return json.loads(r.read())

    shapes = {}
    for impl in ("nats", "pynatsd"):
        lp, hh, sh = free_port(), free_port(), free_port()
        with ServerProcess(impl, f'http: {hh}\nleafnodes {{ listen: "127.0.0.1:{lp}" }}\n'), \
                ServerProcess(impl, f'http: {sh}\nleafnodes {{ remotes [ {{ url: "nats-leaf://127.0.0.1:{lp}" }} ] }}\n'):
            await wait_until(lambda: get(hh, "/leafz")["leafnodes"] == 1, "the leaf to connect")  # noqa: B023
            await wait_until(lambda: get(sh, "/leafz")["leafnodes"] == 1, "the spoke to register it")  # noqa: B023
            await wait_until(lambda: bool(get(hh, "/leafz")["leafs"][0]["rtt"]), "a first rtt")  # noqa: B023
            shapes[impl] = (
                set(get(hh, "/leafz?subs=1")["leafs"][0]) - {"compression"},
                set(get(sh, "/leafz?subs=1")["leafs"][0]) - {"compression"},
                set(get(hh, "/varz")["leaf"]),
                set(get(sh, "/varz")["leaf"]),
                get(sh, "/varz")["leaf"]["remotes"][0]["local_account"],
                get(hh, "/varz")["leafnodes"],
            )
    assert shapes["pynatsd"] == shapes["nats"]


@pytest.mark.parametrize(("hub_impl", "spoke_impl"), [("pynatsd", "nats"), ("nats", "pynatsd"), ("pynatsd", "pynatsd")])
async def test_leaf_user_permissions(hub_impl: str, spoke_impl: str) -> None:
    """A leaf logging in as a user of the server's own authorization gets that user's account and
    permissions: publish = what it may send the hub, subscribe = what it may receive."""
    lp = free_port()
    hub_conf = (
        "authorization { users [\n"
        ' { user: leaf, password: p, permissions: { publish: "ok.>", subscribe: "ok.>" } }\n'
        " { user: c, password: c }\n] }\n"
        f'leafnodes {{ listen: "127.0.0.1:{lp}" }}\n'
    )
    spoke_conf = f'leafnodes {{ remotes [ {{ url: "nats-leaf://leaf:p@127.0.0.1:{lp}" }} ] }}\n'
    with ServerProcess(hub_impl, hub_conf) as hub, ServerProcess(spoke_impl, spoke_conf) as spoke:
        ch = await nats.connect(hub.url.replace("nats://", "nats://c:c@"))
        cs = await nats.connect(spoke.url)
        try:
            # (a ">" subscription is not covered by "ok.>": nats-server does not pass it on either)
            at_hub, no_at_hub = await ch.subscribe("ok.>"), await ch.subscribe("no.>")
            at_spoke, no_at_spoke = await cs.subscribe("ok.>"), await cs.subscribe("no.>")
            await cross(cs, "ok.a", at_hub)
            await cs.publish("no.a", b"denied")
            await cs.publish("ok.b", b"allowed")
            await cs.flush()
            assert (await at_hub.next_msg(timeout=5)).subject == "ok.b"
            await ch.flush()
            assert no_at_hub.pending_msgs == 0
            while at_spoke.pending_msgs:
                await at_spoke.next_msg(timeout=1)
            await cross(ch, "ok.c", at_spoke)
            await ch.publish("no.c", b"denied")
            await ch.publish("ok.d", b"allowed")
            await ch.flush()
            assert (await at_spoke.next_msg(timeout=5)).subject == "ok.d"
            await cs.flush()
            while no_at_spoke.pending_msgs:  # the spoke client's own publish of no.a only
                assert (await no_at_spoke.next_msg(timeout=1)).subject == "no.a"
        finally:
            await ch.close()
            await cs.close()


def test_min_version_refusal_matches_nats_server() -> None:
    """The connect_info INFO, then -ERR with nats-server's text, for an older leaf."""
    answers = {}
    for impl in ("nats", "pynatsd"):
        port = free_port()
        with ServerProcess(impl, f'leafnodes {{ listen: "127.0.0.1:{port}", min_version: "2.99.0" }}\n'):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                f = s.makefile("rb")
                f.readline()
                s.sendall(b'CONNECT {"version":"2.15.1","name":"x","server_id":"NX"}\r\n')
                second = f.readline()
                assert second.startswith(b"INFO ") and b'"connect_info":true' in second
                answers[impl] = f.readline()
    assert answers["pynatsd"] == answers["nats"] == b"-ERR 'connection rejected since minimum version required is \"2.99.0\"'\r\n"


def test_ocsp_peer_on_leafnodes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.conf"
    path.write_text('leafnodes { port: -1, tls { cert_file: "a", key_file: "b", verify: true, ocsp_peer: true } }\n')
    with pytest.raises(ConfigError, match="OCSP peer verification on leafnode connections"):
        load_options(str(path))
