#!/usr/bin/env python3
"""An engine's client of berth's REST/JSON admin API, using only Python's
standard library.

It reads the berthctl environment (BERTH_SERVER, BERTH_CA, BERTH_CERT,
BERTH_KEY; `. .berth-dev/env` after `make run`) and authenticates with the
admin client certificate.

    berth_admin.py pending              # pending nodes, one JSON object per line
    berth_admin.py approve NODE_ID      # approve one; prints the node
    berth_admin.py events [--after N] [--count M] [--type T]...
                                        # follow the event log from cursor N,
                                        # one event per line; stop after M

Errors are google.rpc.Status objects; the script prints their message and
exits with status 1.
"""

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request


class BerthError(Exception):
    """A google.rpc.Status answer, or a failure to reach the server."""

    def __init__(self, http_status, code, message):
        super().__init__(message)
        self.http_status = http_status
        self.code = code


class Client:
    def __init__(self, server, ca, cert, key):
        self.base = "https://" + server
        # TLS 1.3 with the deployment's root, presenting the admin's
        # certificate; the server's certificate names 127.0.0.1 and the
        # hosts given to berthd init --san.
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(cert, key)

    @classmethod
    def from_env(cls):
        try:
            return cls(os.environ["BERTH_SERVER"], os.environ["BERTH_CA"],
                       os.environ["BERTH_CERT"], os.environ["BERTH_KEY"])
        except KeyError as e:
            raise SystemExit("berth_admin.py: %s is not set (load the berthctl environment)" % e)

    def _open(self, method, path, body=None, query=None, timeout=60):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)
        except urllib.error.HTTPError as e:
            try:
                st = json.load(e)
            except ValueError:
                st = {}
            raise BerthError(e.code, st.get("code"), st.get("message") or e.reason) from None
        except urllib.error.URLError as e:
            raise BerthError(None, None, "cannot reach %s: %s" % (self.base, e.reason)) from None

    def call(self, method, path, body=None, query=None):
        with self._open(method, path, body, query) as resp:
            return json.load(resp)

    def nodes(self, status=None):
        """Every node (with the given short status), following the pages."""
        token = ""
        while True:
            q = {"page_size": 500}
            if status:
                q["status"] = status
            if token:
                q["page_token"] = token
            page = self.call("GET", "/v1/nodes", query=q)
            yield from page.get("nodes", [])
            token = page.get("next_page_token", "")
            if not token:
                return

    def approve(self, node_id):
        return self.call("POST", "/v1/nodes/%s:approve" % urllib.parse.quote(node_id, safe=""), body={})["node"]

    def events(self, after=0, types=()):
        """The registration event log after a cursor, then live: a
        stream of JSON objects, one per line."""
        q = {"after": after}
        if types:
            q["type"] = list(types)
        with self._open("GET", "/v1/events", query=q, timeout=None) as resp:
            for line in resp:
                msg = json.loads(line)
                if "error" in msg:
                    e = msg["error"]
                    raise BerthError(200, e.get("code"), e.get("message"))
                yield msg["result"]["event"]


def main(argv):
    p = argparse.ArgumentParser(prog="berth_admin.py", description="berth REST/JSON admin client")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pending", help="list pending nodes")
    ap = sub.add_parser("approve", help="approve a node")
    ap.add_argument("node_id")
    ev = sub.add_parser("events", help="follow the event log")
    ev.add_argument("--after", type=int, default=0, help="cursor of the last event seen")
    ev.add_argument("--count", type=int, default=0, help="stop after this many events (0: follow)")
    ev.add_argument("--type", action="append", default=[], help="keep only this event type (repeatable)")
    args = p.parse_args(argv)

    c = Client.from_env()
    try:
        if args.cmd == "pending":
            for n in c.nodes(status="pending"):
                print(json.dumps({"id": n["id"], "hostname": n["facts"]["hostname"],
                                  "hardware_uuid": n["facts"]["hardware_uuid"]}))
        elif args.cmd == "approve":
            n = c.approve(args.node_id)
            print(json.dumps({"id": n["id"], "status": n["status"]}))
        elif args.cmd == "events":
            seen = 0
            for e in c.events(after=args.after, types=args.type):
                # int64 fields are strings in protobuf's JSON.
                print(json.dumps({"cursor": int(e["cursor"]), "type": e["type"],
                                  "node_id": e["node_id"], "time": e["time"],
                                  "actor": e.get("details", {}).get("actor", "")}), flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    break
    except BerthError as e:
        print("berth_admin.py: %s (HTTP %s, code %s)" % (e, e.http_status, e.code), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
