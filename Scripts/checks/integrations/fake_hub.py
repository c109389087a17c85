"""A local server that speaks the Hugging Face Hub's API for test repositories, for huggingface_hub and Finch
to download from (HF_ENDPOINT=http://127.0.0.1:PORT): `api/models/ID/revision/REV` (commit and files),
`api/models/ID/tree/REV` (the files with their blob ids and LFS hashes), `ID/resolve/REV/PATH` (a small file's
bytes with its git blob id as ETag; an LFS file -- .safetensors, .gguf -- as a 302 to another host,
`localhost`, standing for the Hub's CDN, with X-Linked-Etag / X-Linked-Size), X-Repo-Commit on both, and
X-Error-Code on failures; blobs honour Range.

    python fake_hub.py PORT_FILE ID=FOLDER [ID=FOLDER ...]    # serves until killed; writes its port to PORT_FILE
"""
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
LFS = (".safetensors", ".gguf")


def git_blob_id(b):
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


class Hub:
    def __init__(self, repos):
        """repos: {id: folder}"""
        self.repos = {}
        self.blobs = {}
        for rid, folder in repos.items():
            files = {}
            for name in sorted(os.listdir(folder)):
                with open(os.path.join(folder, name), "rb") as f:
                    files[name] = f.read()
            self.repos[rid] = files
            for name, b in files.items():
                if name.endswith(LFS):
                    self.blobs[hashlib.sha256(b).hexdigest()] = b
        self.log = []


def make_handler(hub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, headers=None, body=b"", head=False):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def error(self, status, code, message, head=False):
            self.send(status, {"X-Error-Code": code, "Content-Type": "application/json"}, json.dumps({"error": message}).encode(), head)

        def route(self, head):
            path = unquote(urlparse(self.path).path)
            hub.log.append(f"{self.command} {path}")
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                rid = parts[2] + "/" + parts[3]
                files = hub.repos.get(rid)
                if files is None:
                    return self.error(401, "RepoNotFound", "Repository not found", head)
                if parts[5] not in ("main", COMMIT):
                    return self.error(404, "RevisionNotFound", "Invalid rev id", head)
                if parts[4] == "revision":
                    body = {"id": rid, "modelId": rid, "sha": COMMIT, "private": False, "gated": False, "disabled": False,
                            "siblings": [{"rfilename": n} for n in files]}
                else:
                    body = []
                    for n, b in files.items():
                        e = {"type": "file", "oid": git_blob_id(b), "size": len(b), "path": n}
                        if n.endswith(LFS):
                            e["lfs"] = {"oid": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}
                        body.append(e)
                return self.send(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)
            if len(parts) >= 5 and parts[2] == "resolve":
                rid = parts[0] + "/" + parts[1]
                files = hub.repos.get(rid)
                if files is None:
                    return self.error(401, "RepoNotFound", "Repository not found", head)
                if parts[3] not in ("main", COMMIT):
                    return self.error(404, "RevisionNotFound", "Invalid rev id", head)
                name = "/".join(parts[4:])
                if name not in files:
                    return self.send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, b"", head)
                b = files[name]
                if name.endswith(LFS):
                    sha = hashlib.sha256(b).hexdigest()
                    port = self.server.server_address[1]
                    return self.send(302, {"X-Repo-Commit": COMMIT, "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(b)),
                                           "ETag": f'"{git_blob_id(b)}"', "Location": f"http://localhost:{port}/blobs/{sha}"}, b"", head)
                return self.send(200, {"X-Repo-Commit": COMMIT, "ETag": f'"{git_blob_id(b)}"', "Content-Type": "application/octet-stream"}, b, head)
            if len(parts) == 2 and parts[0] == "blobs" and parts[1] in hub.blobs:
                b = hub.blobs[parts[1]]
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    return self.send(206, {"Content-Range": f"bytes {start}-{len(b) - 1}/{len(b)}"}, b[start:], head)
                return self.send(200, {}, b, head)
            return self.error(404, "EntryNotFound", "not found", head)

        def do_GET(self):
            self.route(False)

        def do_HEAD(self):
            self.route(True)

    return Handler


def serve(repos, port=0):
    """Starts the server on a thread; returns (server, hub)."""
    hub = Hub(repos)
    server = ThreadingHTTPServer(("", port), make_handler(hub))   # every address: localhost may be ::1 or 127.0.0.1
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hub


if __name__ == "__main__":
    port_file, specs = sys.argv[1], sys.argv[2:]
    server, _ = serve(dict(s.split("=", 1) for s in specs))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    threading.Event().wait()
