#!/usr/bin/env python3
"""A stand-in for Teleport's `tctl`, for the Teleport sidecar's tests (crates/cli/tests/it/teleport.rs).

Teleport itself cannot be installed on the machines the tests run on, so this script plays the part
of `tctl` against a file instead of an Auth Service. It is recorded from Teleport's own code
(tool/tctl/common/resource_command.go and api/types, Teleport 17): it accepts the command lines the
real tool accepts for what the sidecar uses, refuses the others as it would, and answers in its
words (`ERROR: ...` on stderr, exit status 1):

* global flags `--identity`/`-i FILE` (must be a readable file) and `--auth-server ADDR` (host:port;
  required with an identity file), `--insecure`, `-d`/`--debug`, in `--flag value` or
  `--flag=value` form, before or after the subcommand;
* `create [-f|--force] [FILENAME]`: the resource from FILENAME, or from stdin when no name is given
  (a `-` is a file called `-`, as in tctl), as YAML or JSON; kinds `db` and `app`, version `v3`;
  a db name must match `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`, an app name be a DNS-1035 label;
  label keys `^[a-zA-Z/.0-9_:*-]+$`; db needs spec.protocol and spec.uri, app spec.uri; an existing
  name without `--force` is refused (AlreadyExists);
* `rm KIND/NAME` (alias `del`) for `db` and `app`, `NotFound` when absent;
* `get KIND[/NAME] [--format yaml|json|text]`: `db` lists every database, `db/NAME` and `app/NAME`
  one, `NotFound` when absent; JSON output is a list of resources.

State: resources live in the JSON file named by TCTL_STANDIN_STATE (`{"db": {...}, "app": {...}}`);
every call's arguments are appended to `<state>.calls` (one JSON list per line) so tests can check
them; while a file `<state>.down` exists every call fails as if the Auth Service were unreachable.
"""

import fcntl
import json
import os
import re
import sys

DB_NAME = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
APP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-zA-Z/.0-9_:*-]+$")
KINDS = {"db": "database", "app": "application"}
ALIASES = {"db": "db", "database": "db", "databases": "db", "app": "app", "apps": "app"}


class Failure(Exception):
    pass


def fail(message):
    raise Failure(message)


def parse(argv):
    """kingpin's parse of the part of tctl's command line the sidecar uses."""
    flags = {"identity": None, "auth-server": None, "format": "yaml", "force": False}
    takes_value = {"--identity": "identity", "-i": "identity", "--auth-server": "auth-server",
                   "--format": "format", "--config": "config", "-c": "config"}
    switches = {"--insecure", "-d", "--debug", "-f", "--force"}
    positional = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            if name not in takes_value:
                fail(f"unknown long flag '{name}'")
            flags[takes_value[name]] = value
        elif arg in takes_value:
            if i + 1 >= len(argv):
                fail(f"expected argument for flag '{arg}'")
            flags[takes_value[arg]] = argv[i + 1]
            i += 1
        elif arg in switches:
            if arg in ("-f", "--force"):
                flags["force"] = True
        elif arg.startswith("-") and arg != "-":
            kind = "long" if arg.startswith("--") else "short"
            fail(f"unknown {kind} flag '{arg}'")
        else:
            positional.append(arg)
        i += 1
    if not positional:
        fail("expected command but got nothing")
    return flags, positional[0], positional[1:]


def check_identity(flags):
    identity = flags["identity"]
    if identity is None:
        fail("this stand-in only runs with an identity file (--identity)")
    if not os.path.isfile(identity) or not os.access(identity, os.R_OK):
        fail(f"open {identity}: no such file or directory")
    server = flags["auth-server"]
    if not server:
        fail("--auth-server must be provided when using an identity file")
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        fail(f"address {server}: missing port in address")


def parse_ref(text):
    kind, _, name = text.partition("/")
    if kind not in ALIASES:
        fail(f'unsupported resource: "{kind}"')
    return ALIASES[kind], name


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"db": {}, "app": {}}


def save(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_documents(text):
    text = text.strip()
    if not text:
        fail("no resources found, empty input?")
    try:
        document = json.loads(text)
        return document if isinstance(document, list) else [document]
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        fail("this stand-in reads YAML only where PyYAML is installed")
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        fail(f"error converting YAML to JSON: {error}")


def validate(document):
    if not isinstance(document, dict):
        fail("resource is not an object")
    kind = document.get("kind")
    if kind not in KINDS:
        fail(f'creating resources of type "{kind}" is not supported')
    if document.get("version") != "v3":
        fail(f'{kind} resource version "{document.get("version")}" is not supported')
    metadata = document.get("metadata") or {}
    name = metadata.get("name") or ""
    if not name:
        fail("missing parameter Name")
    if kind == "db" and not DB_NAME.match(name):
        fail(f'invalid database name: "{name}" does not match regex used for validation "{DB_NAME.pattern}"')
    if kind == "app" and (not APP_NAME.match(name) or len(name) > 63):
        fail(f'application name "{name}" must be a valid DNS subdomain')
    for key, value in (metadata.get("labels") or {}).items():
        if not LABEL_KEY.match(key):
            fail(f'invalid label key: "{key}"')
        if not isinstance(value, str):
            fail(f'label "{key}" must have a string value')
    spec = document.get("spec") or {}
    if kind == "db":
        if not spec.get("protocol"):
            fail(f'database "{name}" protocol is empty')
        if not spec.get("uri"):
            fail(f'database "{name}" URI is empty')
    if kind == "app" and not spec.get("uri"):
        fail(f'application "{name}" URI is empty')
    return kind, name


def run(argv, state_path):
    flags, command, args = parse(argv)
    check_identity(flags)
    state = load(state_path)
    if command == "create":
        if len(args) > 1:
            fail(f"unexpected {args[1]}")
        if args:
            try:
                with open(args[0]) as f:
                    text = f.read()
            except OSError:
                fail(f"stat {os.path.abspath(args[0])}: no such file or directory")
        else:
            text = sys.stdin.read()
        for document in read_documents(text):
            kind, name = validate(document)
            exists = name in state[kind]
            if exists and not flags["force"]:
                fail(f'{KINDS[kind]} "{name}" already exists, use -f or --force flag to overwrite')
            state[kind][name] = document
            save(state_path, state)
            print(f'{KINDS[kind]} "{name}" has been {"updated" if exists else "created"}')
    elif command in ("rm", "del"):
        if len(args) != 1:
            fail("required argument 'resource type/resource name' not provided")
        kind, name = parse_ref(args[0])
        if not name:
            fail("provide a full resource name to delete, for example:\n$ tctl rm cluster/east")
        if name not in state[kind]:
            fail(f'{KINDS[kind]} "{name}" not found')
        del state[kind][name]
        save(state_path, state)
        print(f'{KINDS[kind]} "{name}" has been deleted')
    elif command == "get":
        if len(args) != 1:
            fail("required argument 'resources' not provided")
        if flags["format"] not in ("yaml", "json", "text"):
            fail("unsupported format")
        kind, name = parse_ref(args[0])
        if name:
            if name not in state[kind]:
                fail(f'{KINDS[kind]} "{name}" not found')
            found = [state[kind][name]]
        else:
            found = [state[kind][key] for key in sorted(state[kind])]
        if flags["format"] == "json":
            print(json.dumps(found, indent=4))
        else:
            for document in found:
                print(f'{document["kind"]}/{document["metadata"]["name"]}')
    else:
        fail(f'expected command but got "{command}"')


def main():
    state_path = os.environ.get("TCTL_STANDIN_STATE")
    if not state_path:
        print("ERROR: TCTL_STANDIN_STATE is not set", file=sys.stderr)
        return 1
    with open(state_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(state_path + ".calls", "a") as calls:
            calls.write(json.dumps(sys.argv[1:]) + "\n")
        try:
            if os.path.exists(state_path + ".down"):
                fail("connection error: desc = \"transport: Error while dialing: dial tcp: connect: connection refused\"")
            run(sys.argv[1:], state_path)
        except Failure as error:
            print(f"ERROR: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
