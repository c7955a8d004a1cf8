"""A Hugging Face Hub endpoint on 127.0.0.1 for the tests: the part of the Hub's HTTP interface
that ``huggingface_hub.hf_hub_download`` and ``HfApi`` uploads use.

Model repositories hold commits (files by path); refs (branches, tags) name commits. Served:

* ``HEAD``/``GET /{owner}/{repo}/resolve/{revision}/{path}``: the file, with the Hub's headers
  (``X-Repo-Commit``, ``ETag``, ``Content-Length``); unknown repo, revision or file answer 404
  with the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).

and the writes ``HfApi.create_repo`` and ``HfApi.create_commit`` make (every file "regular", sent
inline in the commit):

* ``POST /api/repos/create``, ``POST /api/validate-yaml`` (a model card's metadata),
* ``POST /api/models/{owner}/{repo}/preupload/{revision}``, ``.../commit/{revision}`` (NDJSON).

Every request is recorded in ``requests`` (method, path), so a test can tell that a run made
none; the ``Authorization`` headers of writes are kept in ``tokens``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import urllib.parse
from dataclasses import dataclass, field


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def commit(self, files: dict[str, bytes], *, ref: str = "main") -> str:
        """Add a commit of ``files`` (a whole snapshot), move ``ref`` to it; its hash."""
        h = hashlib.sha1(
            repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()
        )
        h.update(str(len(self.commits)).encode())
        sha = h.hexdigest()
        self.commits[sha] = dict(files)
        self.refs[ref] = sha
        return sha


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.tokens: list[str | None] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _json(self, value: object) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                hub.requests.append(("POST", path))
                hub.tokens.append(self.headers.get("Authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = path.strip("/").split("/")
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = "/".join(p for p in (req.get("organization"), req["name"]) if p)
                    hub.repo(repo_id)
                    return self._json({"url": f"{hub.url}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._json({"errors": [], "warnings": []})
                if len(parts) == 6 and parts[:2] == ["api", "models"]:
                    repo = hub.repos.get(f"{parts[2]}/{parts[3]}")
                    if repo is None:
                        return self._error("RepoNotFound")
                    if parts[4] == "preupload":
                        files = [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in json.loads(body)["files"]
                        ]
                        return self._json({"files": files})
                    if parts[4] == "commit":
                        base = repo.commits.get(repo.refs.get(parts[5], ""), {})
                        files = dict(base)
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                v = item["value"]
                                files[v["path"]] = base64.b64decode(v["content"])
                        sha = repo.commit(files, ref=parts[5])
                        url = f"{hub.url}/{parts[2]}/{parts[3]}/commit/{sha}"
                        return self._json({"commitUrl": url, "commitOid": sha})
                return self._error("RepoNotFound")

            def _error(self, code: str) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, body: bool) -> None:
                path = urllib.parse.urlsplit(self.path).path
                hub.requests.append((self.command, path))
                parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error("RepoNotFound")
                repo = hub.repos.get(f"{parts[0]}/{parts[1]}")
                if repo is None:
                    return self._error("RepoNotFound")
                revision, name = parts[3], "/".join(parts[4:])
                sha = repo.refs.get(revision, revision if revision in repo.commits else None)
                if sha is None:
                    return self._error("RevisionNotFound")
                data = repo.commits[sha].get(name)
                if data is None:
                    return self._error("EntryNotFound")
                self.send_response(200)
                self.send_header("X-Repo-Commit", sha)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def repo(self, repo_id: str) -> Repo:
        return self.repos.setdefault(repo_id, Repo())

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
