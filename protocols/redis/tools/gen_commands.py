#!/usr/bin/env python3
"""Generate src/table/generated.rs and tests/support/getkeys_cases.rs from a live Redis server.

The command table is read from the server itself, never hand-written, so
that arity, flags and key specs are exactly what Redis enforces:

    redis-server --port 6399 --bind 127.0.0.1 --save '' --appendonly no &
    python3 tools/gen_commands.py --port 6399

It speaks RESP3 over a plain socket (HELLO 3, so key specs arrive as maps),
reads COMMAND INFO and COMMAND DOCS, and asks COMMAND GETKEYSANDFLAGS for a
set of sample command lines so the Rust key extraction is tested against
the server's own answers. Python 3 standard library only.
"""

import argparse
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
OUT_TABLE = os.path.join(CRATE, "src", "table", "generated.rs")
OUT_TESTS = os.path.join(CRATE, "tests", "support", "getkeys_cases.rs")

# Command flags known to the Rust `CommandFlags` type (src/table/flags.rs).
# An unknown flag stops the generator: add a constant there first.
COMMAND_FLAGS = [
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript",
    "blocking", "loading", "stale", "skip_monitor", "skip_slowlog", "asking",
    "fast", "no_auth", "may_replicate", "sentinel", "only_sentinel",
    "no_mandatory_keys", "protected", "module_getkeys", "module_no_cluster",
    "no_async_loading", "no_multi", "movablekeys", "allow_busy",
    "module_getchannels",
]
# Command tips mapped onto extra `CommandFlags` bits; other tips are
# cluster routing hints the proxy does not use.
TIP_FLAGS = {
    "nondeterministic_output": "nondeterministic_output",
    "nondeterministic_output_order": "nondeterministic_output_order",
}
KEY_FLAGS = [
    "RO", "RW", "OW", "RM", "access", "update", "insert", "delete",
    "not_key", "incomplete", "variable_flags",
]
GROUPS = {
    "generic": "Generic", "string": "String", "list": "List", "set": "Set",
    "sorted-set": "SortedSet", "hash": "Hash", "pubsub": "PubSub",
    "transactions": "Transactions", "connection": "Connection",
    "server": "Server", "scripting": "Scripting",
    "hyperloglog": "HyperLogLog", "cluster": "Cluster",
    "sentinel": "Sentinel", "geo": "Geo", "stream": "Stream",
    "bitmap": "Bitmap", "module": "Module",
}

# Sample command lines for COMMAND GETKEYSANDFLAGS. Every argument that
# could be a key is unique, so a returned key name maps back to one index.
GETKEYS_SAMPLES = [
    "GET k1", "SET k1 v", "SET k1 v GET", "MGET k1 k2 k3",
    "MSET k1 v1 k2 v2 k3 v3", "MSETNX k1 v1 k2 v2", "DEL k1 k2 k3",
    "EXISTS k1 k2", "RENAME k1 k2", "COPY k1 k2 REPLACE",
    "SMOVE k1 k2 m", "LMOVE k1 k2 LEFT RIGHT", "BLMOVE k1 k2 LEFT RIGHT 0",
    "RPOPLPUSH k1 k2", "BRPOPLPUSH k1 k2 0",
    "BLPOP k1 k2 k3 0", "BRPOP k1 0", "BZPOPMIN k1 k2 0",
    "LMPOP 2 k1 k2 LEFT", "BLMPOP 0 2 k1 k2 LEFT COUNT 2",
    "ZMPOP 1 k1 MIN", "BZMPOP 0 2 k1 k2 MAX",
    "EVAL s 0", "EVAL s 2 k1 k2 a1 a2", "EVALSHA s 1 k1 a1",
    "EVAL_RO s 1 k1", "FCALL f 2 k1 k2 a1", "FCALL_RO f 0 a1",
    "ZUNIONSTORE k1 2 k2 k3 WEIGHTS 1 2", "ZINTERSTORE k1 1 k2",
    "ZDIFFSTORE k1 2 k2 k3", "ZUNION 2 k1 k2 WITHSCORES", "ZINTER 1 k1",
    "ZDIFF 2 k1 k2", "ZINTERCARD 2 k1 k2 LIMIT 1", "SINTERCARD 2 k1 k2",
    "SUNIONSTORE k1 k2 k3", "SINTER k1 k2", "SDIFFSTORE k1 k2",
    "XREAD STREAMS k1 0", "XREAD COUNT 2 BLOCK 0 STREAMS k1 k2 0 0",
    "XREADGROUP GROUP g c STREAMS k1 k2 > >",
    "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS k1 0",
    "XADD k1 * f v", "XACK k1 g 0-1", "XINFO STREAM k1", "XINFO GROUPS k1",
    "XGROUP CREATE k1 g $", "XAUTOCLAIM k1 g c 0 0",
    "SORT k1", "SORT k1 BY p GET q LIMIT 0 10 STORE k2",
    "SORT k1 STORE k2", "SORT_RO k1 BY p",
    "MIGRATE h 1 k1 0 5000", "MIGRATE h 1 \"\" 0 5000 KEYS k1 k2",
    "MIGRATE h 1 \"\" 0 5000 COPY REPLACE AUTH pw KEYS k1 k2 k3",
    "MIGRATE h 1 \"\" 0 5000 AUTH2 u pw KEYS k1",
    "GEORADIUS k1 0 0 1 km STORE k2", "GEORADIUS k1 0 0 1 km",
    "GEORADIUS k1 0 0 1 km STOREDIST k2",
    "GEORADIUSBYMEMBER k1 m 1 km STORE k2", "GEOSEARCHSTORE k1 k2 FROMMEMBER m BYRADIUS 1 km",
    "OBJECT ENCODING k1", "OBJECT FREQ k1", "MEMORY USAGE k1",
    "DEBUG OBJECT k1", "BITOP AND k1 k2 k3", "BITFIELD k1 GET u8 0",
    "BITFIELD_RO k1 GET u8 0", "PFMERGE k1 k2 k3", "PFCOUNT k1 k2",
    "LCS k1 k2", "OBJECT HELP", "CLIENT SETNAME n", "WATCH k1 k2",
    "TOUCH k1 k2", "UNLINK k1", "GETEX k1 PX 1", "GETDEL k1",
    "HSET k1 f v", "HGETALL k1", "INCR k1", "DUMP k1",
    "RESTORE k1 0 x REPLACE", "RENAMENX k1 k2", "EXPIRE k1 10",
    "PUBLISH c m", "SPUBLISH c m", "LPOS k1 e", "SMISMEMBER k1 a b",
]


def send(sock, *args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    sock.sendall(b"".join(out))


class Reader:
    def __init__(self, sock):
        self.f = sock.makefile("rb")

    def line(self):
        l = self.f.readline()
        if not l.endswith(b"\r\n"):
            raise RuntimeError("connection closed mid-reply")
        return l[:-2]

    def read(self):
        l = self.line()
        t, rest = l[:1], l[1:]
        if t in (b"+",):
            return rest.decode()
        if t in (b"-", b"!"):
            if t == b"!":
                rest = self.f.read(int(rest) + 2)[:-2]
            return ServerError(rest.decode())
        if t == b":":
            return int(rest)
        if t in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            if t == b"=":
                data = data[4:]
            return data.decode()
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        if t == b"%":
            n = int(rest)
            m = {}
            for _ in range(n):
                k = self.read()
                m[k] = self.read()
            return m
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t in (b",", b"("):
            return rest.decode()
        if t == b"|":
            n = int(rest)
            for _ in range(2 * n):
                self.read()
            return self.read()
        raise RuntimeError("unexpected RESP type %r" % t)


class ServerError(str):
    pass


def call(sock, reader, *args):
    send(sock, *args)
    return reader.read()


def split_args(line):
    """Split a sample line on spaces; "" is an empty argument."""
    return ["" if a == '""' else a for a in line.split(" ")]


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def const_name(flag):
    return flag.upper()


def flags_expr(ty, names):
    if not names:
        return "%s(0)" % ty
    return "%s(%s)" % (ty, " | ".join("%s::%s.0" % (ty, const_name(n)) for n in names))


def keyspec_expr(ks):
    for f in ks["flags"]:
        if f not in KEY_FLAGS:
            sys.exit("unknown key spec flag %r: add it to KeySpecFlags and KEY_FLAGS" % f)
    bs = ks["begin_search"]
    if bs["type"] == "index":
        begin = "BeginSearch::Index(%d)" % bs["spec"]["index"]
    elif bs["type"] == "keyword":
        begin = "BeginSearch::Keyword { keyword: %s, startfrom: %d }" % (
            rust_str(bs["spec"]["keyword"]), bs["spec"]["startfrom"])
    elif bs["type"] == "unknown":
        begin = "BeginSearch::Unknown"
    else:
        sys.exit("unknown begin_search type %r" % bs["type"])
    fk = ks["find_keys"]
    if fk["type"] == "range":
        s = fk["spec"]
        find = "FindKeys::Range { lastkey: %d, keystep: %d, limit: %d }" % (
            s["lastkey"], s["keystep"], s["limit"])
    elif fk["type"] == "keynum":
        s = fk["spec"]
        find = "FindKeys::Keynum { keynumidx: %d, firstkey: %d, keystep: %d }" % (
            s["keynumidx"], s["firstkey"], s["keystep"])
    elif fk["type"] == "unknown":
        find = "FindKeys::Unknown"
    else:
        sys.exit("unknown find_keys type %r" % fk["type"])
    return "KeySpec { flags: %s, begin_search: %s, find_keys: %s }" % (
        flags_expr("KeySpecFlags", ks["flags"]), begin, find)


def command_expr(info, docs, indent):
    name, arity, flags = info[0], info[1], list(info[2])
    tips = info[7] or []
    key_specs = info[8] or []
    subs = info[9] or []
    for f in flags:
        if f not in COMMAND_FLAGS:
            sys.exit("unknown command flag %r: add it to CommandFlags and COMMAND_FLAGS" % f)
    for t in tips:
        if t in TIP_FLAGS:
            flags.append(TIP_FLAGS[t])
    doc = docs.get(name, {})
    group = doc.get("group")
    if group not in GROUPS:
        sys.exit("unknown command group %r for %s: add it to Group and GROUPS" % (group, name))
    pad = " " * indent
    lines = [pad + "CommandSpec {",
             pad + "    name: %s," % rust_str(name.lower()),
             pad + "    arity: %d," % arity,
             pad + "    flags: %s," % flags_expr("CommandFlags", flags),
             pad + "    group: Group::%s," % GROUPS[group]]
    if key_specs:
        lines.append(pad + "    key_specs: &[")
        for ks in key_specs:
            lines.append(pad + "        " + keyspec_expr(ks) + ",")
        lines.append(pad + "    ],")
    else:
        lines.append(pad + "    key_specs: &[],")
    if subs:
        sub_docs = doc.get("subcommands") or {}
        lines.append(pad + "    subcommands: &[")
        for sub in sorted(subs, key=lambda s: s[0].lower()):
            lines.append(command_expr(sub, sub_docs, indent + 8) + ",")
        lines.append(pad + "    ],")
    else:
        lines.append(pad + "    subcommands: &[],")
    lines.append(pad + "}")
    return "\n".join(lines)


def gen_table(version, infos, docs):
    out = [
        "// @generated by tools/gen_commands.py from Redis %s. Do not edit:" % version,
        "// start a redis-server and rerun the generator (see its docstring).",
        "//! The Redis %s command table, read from the server's COMMAND INFO and" % version,
        "//! COMMAND DOCS replies and sorted by name for binary search.",
        "",
        "use super::{BeginSearch, CommandFlags, CommandSpec, FindKeys, Group, KeySpec, KeySpecFlags};",
        "",
        "/// Redis version the table was generated from.",
        "pub const REDIS_VERSION: &str = %s;" % rust_str(version),
        "",
        "/// Every top-level command, sorted by lowercase name.",
        "pub static COMMANDS: &[CommandSpec] = &[",
    ]
    for info in sorted(infos, key=lambda i: i[0].lower()):
        out.append(command_expr(info, docs, 4) + ",")
    out.append("];")
    return "\n".join(out) + "\n"


def gen_tests(version, sock, reader):
    out = [
        "// @generated by tools/gen_commands.py from Redis %s. Do not edit." % version,
        "//! Key positions the server itself reports (COMMAND GETKEYSANDFLAGS) for",
        "//! sample command lines, replayed against `cutover_redis::keys`.",
        "",
        "/// A command line and its keys as (index, write), or None when Redis",
        "/// refuses to extract keys from the line.",
        "pub type Case = (&'static [&'static str], Option<&'static [(usize, bool)]>);",
        "",
        "/// Every sampled command line.",
        "pub const CASES: &[Case] = &[",
    ]
    for line in GETKEYS_SAMPLES:
        args = split_args(line)
        reply = call(sock, reader, "COMMAND", "GETKEYSANDFLAGS", *args)
        argv = ", ".join(rust_str(a) for a in args)
        if isinstance(reply, ServerError):
            out.append("    (&[%s], None), // %s" % (argv, reply.replace("\n", " ")))
            continue
        keys = []
        for name, kflags in reply:
            positions = [i for i, a in enumerate(args) if a == name and i > 0]
            if len(positions) != 1:
                sys.exit("sample %r: key %r is not unique among the arguments" % (line, name))
            write = any(f in kflags for f in ("RW", "OW", "RM", "insert", "update", "delete"))
            keys.append("(%d, %s)" % (positions[0], "true" if write else "false"))
        out.append("    (&[%s], Some(&[%s]))," % (argv, ", ".join(keys)))
    out.append("];")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    a = ap.parse_args()
    sock = socket.create_connection((a.host, a.port))
    reader = Reader(sock)
    hello = call(sock, reader, "HELLO", "3")
    if isinstance(hello, ServerError):
        sys.exit("HELLO 3 failed: %s" % hello)
    version = hello["version"]
    infos = [i for i in call(sock, reader, "COMMAND", "INFO") if i]
    docs = call(sock, reader, "COMMAND", "DOCS")
    with open(OUT_TABLE, "w") as f:
        f.write(gen_table(version, infos, docs))
    with open(OUT_TESTS, "w") as f:
        f.write(gen_tests(version, sock, reader))
    print("wrote %s (%d commands) and %s from Redis %s" % (
        OUT_TABLE, len(infos), OUT_TESTS, version))


if __name__ == "__main__":
    main()
