"""A local stand-in for the Hugging Face Hub and ModelScope HTTP APIs, for tests that must not use the network.

It serves only what huggingface_hub and modelscope call for dataset repositories: revision info, the file
tree, file downloads (with Range, for resume), repo creation and commits (for push) on the HF side; the file
tree and file downloads on the ModelScope side. Every request is recorded, so tests can assert what the
clients really asked for (and that an offline build asked nothing). Faults can be planted per path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


@dataclass
class Repo:
    """A dataset repository: files by path, a card's metadata, and who may read it."""

    files: dict[str, bytes] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    gated: bool = False
    token: str | None = None  # the token a gated repository accepts

    @property
    def commit(self) -> str:
        """A commit id that changes whenever any file does, as a real hub's would."""
        h = hashlib.sha1()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self.files[path] + b"\0")
        return h.hexdigest()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""


class FakeHub:
    """Both hubs on one 127.0.0.1 port: `hf` and `ms` map owner/name → Repo."""

    def __init__(self) -> None:
        self.hf: dict[str, Repo] = {}
        self.ms: dict[str, Repo] = {}
        self.requests: list[Request] = []
        # "METHOD path?query" substring → faults to serve in turn: an HTTP status, or "truncate" (half the body,
        # then the connection drops)
        self.faults: dict[str, list[int | str]] = {}
        self.commits: list[dict[str, Any]] = []  # pushed commits: repo, operations (path → bytes)
        self.created: list[dict[str, Any]] = []
        self.blobs: dict[str, bytes] = {}  # LFS objects uploaded (either hub), by sha256
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fault(self, path_part: str) -> int | str | None:
        for key, queue in self.faults.items():
            if key in path_part and queue:
                return queue.pop(0)
        return None


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _record(self) -> Request:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            # Header names are case-insensitive and clients differ (httpx sends `authorization`): Title-Case them.
            headers = {k.title(): v for k, v in self.headers.items()}
            req = Request(self.command, unquote(split.path), parse_qs(split.query), headers, body)
            hub.requests.append(req)
            return req

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

        def do_HEAD(self) -> None:
            self._route(self._record())

        def do_GET(self) -> None:
            self._route(self._record())

        def do_POST(self) -> None:
            self._route(self._record())

        def do_PUT(self) -> None:
            req = self._record()
            m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", req.path)
            if m is None or hashlib.sha256(req.body).hexdigest() != m[1]:
                return self._json(400, {"Code": 400, "Message": "blob does not match its sha256"})
            hub.blobs[m[1]] = req.body
            return self._json(200, {})

        def _route(self, req: Request) -> None:
            fault = hub.fault(f"{req.method} {req.path}?{json.dumps(req.query)}")
            if isinstance(fault, int):
                return self._json(fault, {"error": "planted fault"})
            if req.path.startswith("/api/v1/"):
                return self._modelscope(req, fault)
            return self._hugging_face(req, fault)

        # --- Hugging Face ---------------------------------------------------------------------------------

        def _hf_repo(self, repo_id: str, req: Request) -> Repo | None:
            repo = hub.hf.get(repo_id)
            if repo is None:
                self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return None
            if repo.gated and req.headers.get("Authorization") != f"Bearer {repo.token}":
                self._json(403, {"error": "Access to this dataset is restricted."}, {"X-Error-Code": "GatedRepo"})
                return None
            return repo

        def _hugging_face(self, req: Request, fault: str | int | None) -> None:
            m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/revision/(.+)", req.path)
            if m:
                repo = self._hf_repo(m[1], req)
                if repo is None:
                    return
                if m[2] not in ("main", repo.commit):
                    return self._json(404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
                info = {
                    "id": m[1],
                    "sha": repo.commit,
                    "private": False,
                    "gated": repo.gated,
                    "cardData": repo.card,
                    "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                    "tags": [],
                }
                return self._json(200, info)
            m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", req.path)
            if m:
                repo = self._hf_repo(m[1], req)
                if repo is None:
                    return
                tree = [
                    {
                        "type": "file",
                        "oid": hashlib.sha1(data).hexdigest(),
                        "size": len(data),
                        "path": path,
                        "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130},
                    }
                    for path, data in sorted(repo.files.items())
                ]
                return self._json(200, tree)
            m = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", req.path)
            if m:
                repo = self._hf_repo(m[1], req)
                if repo is None:
                    return
                data = repo.files.get(m[3])
                if data is None or m[2] not in ("main", repo.commit):
                    return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                return self._body(req, data, headers, fault)
            if req.path == "/api/repos/create" and req.method == "POST":
                hub.created.append(json.loads(req.body))
                body = json.loads(req.body)
                repo_id = f"{body.get('organization') or 'me'}/{body['name']}"
                hub.hf.setdefault(repo_id, Repo())
                return self._json(200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})
            if req.path == "/api/validate-yaml" and req.method == "POST":
                # The Hub checks a README's front matter before a commit; here: it must at least be YAML.
                try:
                    yaml.safe_load(json.loads(req.body)["content"].split("---")[1])
                except (yaml.YAMLError, KeyError, IndexError):
                    return self._json(400, {"error": "invalid YAML front matter"})
                return self._json(200, {"errors": [], "warnings": []})
            m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/preupload/(.+)", req.path)
            if m and req.method == "POST":
                files = json.loads(req.body)["files"]
                # Parquet goes through LFS, as on the real Hub; text is committed inline.
                modes = [
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                        "shouldIgnore": False,
                    }
                    for f in files
                ]
                return self._json(200, {"files": modes})
            m = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", req.path)
            if m and req.method == "POST":
                objects = json.loads(req.body)["objects"]
                answer = [{**o, "actions": {"upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"}}} for o in objects]
                return self._json(200, {"transfer": "basic", "objects": answer})
            m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/commit/(.+)", req.path)
            if m and req.method == "POST":
                return self._commit(m[1], req)
            return self._json(404, {"error": f"fake hub: no route for {req.method} {req.path}"})

        def _commit(self, repo_id: str, req: Request) -> None:
            lines = [json.loads(line) for line in req.body.decode().splitlines() if line.strip()]
            ops = {}
            for line in lines:
                if line["key"] == "file":
                    ops[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "lfsFile":  # uploaded before the commit, named by its sha256
                    ops[line["value"]["path"]] = hub.blobs[line["value"]["oid"]]
            summary = next((x["value"].get("summary") for x in lines if x["key"] == "header"), "")
            hub.commits.append({"repo": repo_id, "files": ops, "summary": summary})
            repo = hub.hf.setdefault(repo_id, Repo())
            repo.files.update(ops)
            return self._json(
                200, {"commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{repo.commit}", "commitOid": repo.commit}
            )

        # --- ModelScope -----------------------------------------------------------------------------------

        def _modelscope(self, req: Request, fault: str | int | None) -> None:
            m = re.fullmatch(r"/api/v1/datasets/([^/]+/[^/]+)/repo/tree", req.path)
            if m:
                repo = hub.ms.get(m[1])
                if repo is None:
                    return self._json(404, {"Code": 404, "Message": "dataset not found", "Success": False})
                if repo.gated and req.headers.get("Authorization") != f"Bearer {repo.token}":
                    return self._json(403, {"Code": 403, "Message": "access denied", "Success": False})
                if req.query.get("PageNumber", ["1"])[0] != "1":
                    return self._json(200, {"Code": 200, "Success": True, "Data": {"Files": []}})
                files = [
                    {
                        "Name": path.rsplit("/", 1)[-1],
                        "Path": path,
                        "Type": "blob",
                        "Size": len(data),
                        "Sha256": hashlib.sha256(data).hexdigest(),
                        "Revision": repo.commit,
                    }
                    for path, data in sorted(repo.files.items())
                ]
                return self._json(200, {"Code": 200, "Success": True, "Data": {"Files": files}})
            m = re.fullmatch(r"/api/v1/datasets/([^/]+/[^/]+)/repo", req.path)
            if m:
                repo = hub.ms.get(m[1])
                data = repo.files.get(req.query.get("FilePath", [""])[0]) if repo else None
                if data is None:
                    return self._json(404, {"Code": 404, "Message": "file not found", "Success": False})
                return self._body(req, data, {}, fault)
            m = re.fullmatch(r"/api/v1/repos/datasets/([^/]+/[^/]+)/info/lfs/objects/batch", req.path)
            if m and req.method == "POST":
                objects = json.loads(req.body)["objects"]
                answer = [
                    {"oid": o["oid"], "actions": {"upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"}}}
                    for o in objects
                ]
                return self._json(200, {"Code": 200, "Success": True, "Data": {"objects": answer}})
            m = re.fullmatch(r"/api/v1/repos/datasets/([^/]+/[^/]+)/commit/(.+)", req.path)
            if m and req.method == "POST":
                body = json.loads(req.body)
                files = {
                    a["path"]: base64.b64decode(a["content"]) if a["type"] == "normal" else hub.blobs[a["sha256"]]
                    for a in body["actions"]
                }
                hub.commits.append({"repo": m[1], "files": files, "summary": body["commit_message"], "hub": "ms"})
                hub.ms.setdefault(m[1], Repo()).files.update(files)
                return self._json(200, {"Code": 200, "Success": True, "Data": {"CommitId": hub.ms[m[1]].commit}})
            m = re.fullmatch(r"/(?:openapi|api)/v1/datasets/([^/]+/[^/]+)", req.path)
            if m and req.method == "GET":
                if m[1] not in hub.ms:
                    return self._json(404, {"Code": 404, "Message": "dataset not found", "Success": False})
                owner, name = m[1].split("/")
                info = {"Id": 1, "Name": name, "Owner": owner, "Namespace": owner, "Visibility": 5}
                return self._json(200, {"Code": 200, "Success": True, "success": True, "Data": info, "data": info})
            if req.path == "/api/v1/datasets" and req.method == "POST":
                form = dict(re.findall(rb'name="(\w+)"\r\n\r\n([^\r]*)\r\n', req.body))
                repo_id = f"{form[b'Owner'].decode()}/{form[b'Name'].decode()}"
                hub.created.append({"hub": "ms", "repo": repo_id, "visibility": form.get(b"Visibility", b"").decode()})
                hub.ms.setdefault(repo_id, Repo())
                data = {"Id": 1, "Name": form[b"Name"].decode(), "Owner": form[b"Owner"].decode()}
                return self._json(200, {"Code": 200, "Success": True, "Data": data})
            return self._json(404, {"Code": 404, "Message": f"fake hub: no route {req.path}", "Success": False})

        # --- bodies ----------------------------------------------------------------------------------------

        def _body(self, req: Request, data: bytes, headers: dict[str, str], fault: str | int | None) -> None:
            """The file, honouring `Range: bytes=N-`; a planted "truncate" sends half of it and drops the line."""
            rng = re.fullmatch(r"bytes=(\d+)-", req.headers.get("Range", ""))
            start = int(rng[1]) if rng else 0
            status = 206 if rng else 200
            part = data[start:]
            extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if rng else {}
            if fault == "truncate" and req.method == "GET":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(
                status,
                part,
                {"Content-Length": str(len(part)), "Accept-Ranges": "bytes", **headers, **extra},
            )

    return Handler
