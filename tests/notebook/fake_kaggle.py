"""A fake Kaggle for the offline rehearsal: the API calls the helpers make (see
docs/kaggle-protocol.md in the shared docs) on loopback, with datasets and kernel outputs kept in
memory, and a `SaveKernel` that runs the pushed notebook as Kaggle would: in a fresh `/kaggle`
(mapped to a temporary folder) whose `input/` holds the latest version of every
`dataset_sources` entry and the latest output of every `kernel_sources` entry, the session's
outputs being whatever it left in `working/`.

Used by chain_rehearsal.py; the session itself is run by a callback, so this file only speaks
the protocol. Every request is recorded (`requests`).
"""
import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Session:
    """One kernel version: its request, status, outputs and log."""

    def __init__(self, kernel, version, request):
        self.kernel = kernel
        self.version = version
        self.request = request
        self.status = "QUEUED"
        self.failure = None
        self.root = None  # the session's /kaggle
        self.outputs = {}  # relative path -> bytes, or the path of a file holding them (large outputs)
        self.log = []  # [{"stream_name", "time", "data"}]


class FakeKaggle:
    """`run_session(session, root)` runs a session (blocking) in `root` (its `/kaggle`, with
    `input/` filled) and returns (ok, failure_message, log_entries)."""

    def __init__(self, work, user, run_session, quota_used_s=3600):
        self.work = work
        self.user = user
        self.run_session = run_session
        self.quota_used_s = quota_used_s
        self.lock = threading.Lock()
        self.requests = []
        self.datasets = {}  # "owner/slug" -> [ {name: bytes} per version ]
        self.blobs = {}  # token -> {"name", "data"}
        self.kernels = {}  # "owner/slug" -> {"text": str, "sessions": [Session]}
        self.next_version = 1
        self.threads = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        for t in self.threads:
            t.join()
        self.server.shutdown()

    def rpcs(self, name):
        with self.lock:
            return [body for (method, path, body) in self.requests if path.endswith("/" + name)]

    def sessions(self, kernel):
        with self.lock:
            return list(self.kernels.get(kernel, {}).get("sessions", []))

    # -- datasets and outputs ------------------------------------------------------------------
    def add_dataset(self, ref, files):
        """A dataset made outside the helpers (e.g. the stand-in toolchain cache)."""
        with self.lock:
            self.datasets.setdefault(ref, []).append(dict(files))

    def add_kernel_output(self, ref, files):
        """A completed kernel whose output is `files` (e.g. the toolchain kernel)."""
        s = Session(ref, 0, {})
        s.status, s.outputs = "COMPLETE", dict(files)
        with self.lock:
            self.kernels.setdefault(ref, {"text": "", "sessions": []})["sessions"].append(s)

    def _mount_inputs(self, session, root):
        inputs = os.path.join(root, "input")
        os.makedirs(inputs)
        req = session.request
        with self.lock:
            mounts = []
            for ref in req.get("datasetDataSources") or []:
                versions = self.datasets.get(ref)
                if versions:
                    mounts.append((ref, versions[-1]))
            for ref in req.get("kernelDataSources") or []:
                done = [s for s in self.kernels.get(ref, {}).get("sessions", [])
                        if s.status == "COMPLETE"]
                if done:
                    mounts.append((ref, done[-1].outputs))
        for ref, files in mounts:
            base = os.path.join(inputs, ref.split("/", 1)[1])
            for name, data in files.items():
                path = os.path.join(base, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if isinstance(data, str):  # a large output: linked, not copied
                    os.symlink(data, path)
                    continue
                with open(path, "wb") as f:
                    f.write(data)
                os.chmod(path, 0o444)  # inputs are read-only on Kaggle
        return [ref for ref, _ in mounts]

    def _run(self, session):
        root = os.path.join(self.work, f"{session.kernel.replace('/', '_')}-v{session.version}")
        shutil.rmtree(root, ignore_errors=True)
        session.root = root
        session.mounted = self._mount_inputs(session, root)
        os.makedirs(os.path.join(root, "working"))
        session.status = "RUNNING"
        try:
            ok, failure, log = self.run_session(session, root)
        except Exception as e:  # the runner itself broke: the session fails, the test sees it
            ok, failure, log = False, f"session runner error: {e!r}", []
        outputs = {}
        working = os.path.join(root, "working")
        for d, _, files in os.walk(working):
            for n in files:
                p = os.path.join(d, n)
                if not os.path.islink(p):
                    if os.path.getsize(p) > (64 << 20):
                        outputs[os.path.relpath(p, working)] = p
                    else:
                        with open(p, "rb") as f:
                            outputs[os.path.relpath(p, working)] = f.read()
        session.outputs, session.log = outputs, log
        session.failure = failure
        session.status = "COMPLETE" if ok else "ERROR"

    # -- HTTP ----------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _body(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
                    data = b""
                    while True:
                        n = int(self.rfile.readline().strip() or b"0", 16)
                        chunk = self.rfile.read(n + 2)
                        if n == 0:
                            return data
                        data += chunk[:n]
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, code, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                data = self._body()
                token = self.path.split("?")[0].rsplit("/", 1)[-1]
                with fake.lock:
                    fake.requests.append(("PUT", self.path, {}))
                    if token not in fake.blobs:
                        return self._send(404, {"code": 404, "message": "unknown upload"})
                    fake.blobs[token]["data"] = data
                self._send(200, {})

            def do_GET(self):
                path = self.path.split("?")[0]
                with fake.lock:
                    fake.requests.append(("GET", self.path, {}))
                parts = path.split("/", 4)  # /files/<kernel owner_slug>/<version>/<name>
                if len(parts) == 5 and parts[1] == "files":
                    kernel, version, name = parts[2].replace("__", "/", 1), int(parts[3]), parts[4]
                    for s in fake.sessions(kernel):
                        if s.version == version and name in s.outputs:
                            data = s.outputs[name]
                            if isinstance(data, str):
                                with open(data, "rb") as f:
                                    data = f.read()
                            return self._send(200, data, "application/octet-stream")
                self._send(404, b"no such object", "text/plain")

            def do_POST(self):
                raw = self._body()
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._send(400, {"code": 400, "message": "body is not JSON"})
                with fake.lock:
                    fake.requests.append(("POST", self.path, body))
                method = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                handler = getattr(fake, f"rpc_{method}", None)
                if handler is None:
                    return self._send(404, {"code": 404, "message": f"no fake for {method}"})
                code, answer = handler(body)
                self._send(code, answer)

        return H

    # -- RPCs ----------------------------------------------------------------------------------
    @staticmethod
    def _not_found(what):
        return 404, {"code": 404, "message": f"{what} not found"}

    def rpc_ListKernels(self, body):
        return 200, {"kernels": []}

    def rpc_GetAcceleratorQuotaStatistics(self, body):
        return 200, {"quotaRefreshTime": "2026-12-07T00:00:00Z",
                     "gpuQuota": {"timeUsed": f"{self.quota_used_s}s", "totalTimeAllowed": "108000s",
                                  "hasEverRun": True}}

    def rpc_GetDatasetStatus(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        with self.lock:
            known = ref in self.datasets
        return (200, {"status": "READY"}) if known else self._not_found(f"dataset {ref}")

    def rpc_StartBlobUpload(self, body):
        with self.lock:
            token = f"blob-{len(self.blobs) + 1}"
            self.blobs[token] = {"name": body.get("name"), "data": None}
        return 200, {"token": token, "createUrl": f"{self.url}/upload/{token}"}

    def _files(self, files):
        out = {}
        with self.lock:
            for f in files or []:
                blob = self.blobs.get(f.get("token"))
                if blob is None or blob["data"] is None:
                    return None
                out[blob["name"]] = blob["data"]
        return out

    def rpc_CreateDataset(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
        files = self._files(body.get("files"))
        if files is None:
            return 200, {"status": "Error", "error": "a file token was never uploaded"}
        with self.lock:
            if ref in self.datasets:
                return 200, {"status": "Error", "error": f"dataset {ref} already exists"}
            self.datasets[ref] = [files]
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok"}

    def rpc_CreateDatasetVersion(self, body):
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        files = self._files((body.get("body") or {}).get("files"))
        if files is None:
            return 200, {"status": "Error", "error": "a file token was never uploaded"}
        with self.lock:
            if ref not in self.datasets:
                return self._not_found(f"dataset {ref}")
            self.datasets[ref].append(files)
        return 200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "Ok"}

    def rpc_SaveKernel(self, body):
        ref = body.get("slug") or ""
        if "/" not in ref:
            ref = f"{self.user}/{ref}"
        with self.lock:
            version = self.next_version
            self.next_version += 1
            k = self.kernels.setdefault(ref, {"text": "", "sessions": []})
            k["text"] = body.get("text") or ""
            s = Session(ref, version, body)
            k["sessions"].append(s)
        if body.get("kernelExecutionType") == "QUICK_SAVE":
            s.status = "NEW_SCRIPT"
        else:
            t = threading.Thread(target=self._run, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()
        return 200, {"ref": f"/code/{ref}", "url": f"https://www.kaggle.com/code/{ref}",
                     "versionNumber": version, "kernelId": 42}

    def rpc_GetKernel(self, body):
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        with self.lock:
            k = self.kernels.get(ref)
        if k is None:
            return self._not_found(f"kernel {ref}")
        return 200, {"metadata": {"ref": ref, "title": "Emergence Lab Training"},
                     "blob": {"source": k["text"], "language": "python", "kernelType": "notebook",
                              "slug": ref.split("/", 1)[1]}}

    def _session(self, body):
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        sessions = self.sessions(ref)
        label = body.get("versionLabel")
        if label:
            sessions = [s for s in sessions if f"v{s.version}" == label]
        return sessions[-1] if sessions else None

    def rpc_GetKernelSessionStatus(self, body):
        s = self._session(body)
        if s is None:
            return self._not_found("kernel session")
        answer = {"status": s.status}
        if s.failure:
            answer["failureMessage"] = s.failure
        return 200, answer

    def rpc_ListKernelSessionOutput(self, body):
        s = self._session(body)
        if s is None:
            return self._not_found("kernel session")
        names = sorted(s.outputs)
        size = max(1, int(body.get("pageSize") or 20))
        start = int(body.get("pageToken") or 0)
        page = names[start:start + size]
        owner_slug = s.kernel.replace("/", "__", 1)
        answer = {"files": [{"fileName": n, "url": f"{self.url}/files/{owner_slug}/{s.version}/{n}"}
                            for n in page]}
        if start == 0 and s.log:
            answer["log"] = json.dumps(s.log)
        if start + size < len(names):
            answer["nextPageToken"] = str(start + size)
        return 200, answer


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
