"""A real S3 API on loopback for the tests: moto's server app in a thread, with every request it serves recorded,
so tests can tell which keys a download touched and whether an upload was started and aborted."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"


def s3_error(
    environ: dict[str, Any], start_response: Callable[..., Any], status: str, code: str, message: str
) -> list[bytes]:
    """Answer with an S3 error document, after reading the request's body as a server does."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response(status, [("Content-Type", "application/xml")])
    return [f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()]


@dataclass(frozen=True)
class S3Request:
    method: str
    path: str
    query: str


@dataclass
class S3Server:
    """moto's S3 at ``http://127.0.0.1:<port>``; ``requests`` lists what it served, oldest first."""

    requests: list[S3Request] = field(default_factory=list)
    url: str = ""
    #: The most part uploads (``UploadPart``) this server has served at once.
    most_parts_at_once: int = 0
    #: Refuse every ``UploadPart`` of this part number with 403 AccessDenied (an error S3 clients do not retry).
    refuse_part: int | None = None
    #: Carry out the next ``CompleteMultipartUpload``, then drop the connection instead of answering (once). Its
    #: retry is answered as S3 and moto do (``"retry completes"``: done again) or as MinIO does (``"retry finds no
    #: upload"``: 404 NoSuchUpload).
    lose_completion_answer: str | None = None
    #: Carry out the next ``PutObject`` of a whole object, then drop the connection instead of answering (once).
    lose_put_answer: bool = False
    _completed_uploads: set[str] = field(default_factory=set)
    #: The checksum algorithm each multipart upload was created with (``x-amz-checksum-algorithm``), by upload id.
    upload_checksums: dict[str, str | None] = field(default_factory=dict)

    def start(self) -> S3Server:
        from moto.moto_server import werkzeug_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        # moto 5.2.5 serves with its own request handler; older releases (Airflow 3.2's leg) with werkzeug's.
        request_handler = getattr(werkzeug_app, "MotoRequestHandler", WSGIRequestHandler)

        moto_app = werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)

        parts_now = [0]
        guard = threading.Lock()

        def recording_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")  # WSGI: bytes as latin-1
            query = environ["QUERY_STRING"]
            method = environ["REQUEST_METHOD"]
            self.requests.append(S3Request(method, path, query))
            if method == "POST" and "uploads" in parse_qs(query, keep_blank_values=True):
                return self._create_upload(moto_app, environ, start_response)
            if refusal := self._checksum_refusal(environ, query):
                return s3_error(environ, start_response, "400 Bad Request", "InvalidRequest", refusal)
            if method == "POST" and "uploadId=" in query:
                upload_id = parse_qs(query)["uploadId"][0]
                if upload_id in self._completed_uploads:
                    return s3_error(environ, start_response, "404 Not Found", "NoSuchUpload",
                                    "The specified upload does not exist.")  # fmt: skip
                if self.lose_completion_answer:
                    if self.lose_completion_answer == "retry finds no upload":
                        self._completed_uploads.add(upload_id)
                    self.lose_completion_answer = None
                    answer = b"".join(moto_app(environ, start_response))
                    assert b"<CompleteMultipartUploadResult" in answer, answer  # carried out
                    environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)  # and its answer lost on the way
                    return []
            if method == "PUT" and self.lose_put_answer and "partNumber=" not in query and "/" in path.strip("/"):
                self.lose_put_answer = False
                b"".join(moto_app(environ, start_response))
                environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)  # carried out, and its answer lost on the way
                return []
            if "partNumber=" not in query or method != "PUT":
                return moto_app(environ, start_response)
            if self.refuse_part is not None and f"partNumber={self.refuse_part}&" in query + "&":
                return s3_error(environ, start_response, "403 Forbidden", "AccessDenied", "refused by the test")
            with guard:
                parts_now[0] += 1
                self.most_parts_at_once = max(self.most_parts_at_once, parts_now[0])
            try:
                time.sleep(0.05)  # a part takes a moment, as over a network: parts in flight overlap
                return list(moto_app(environ, start_response))
            finally:
                with guard:
                    parts_now[0] -= 1

        self._server = make_server("127.0.0.1", 0, recording_app, threaded=True, request_handler=request_handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()
        return self

    def _create_upload(self, app: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        answer = b"".join(app(environ, start_response))
        if found := re.search(rb"<UploadId>([^<]+)</UploadId>", answer):
            algorithm = environ.get("HTTP_X_AMZ_CHECKSUM_ALGORITHM")
            self.upload_checksums[found.group(1).decode()] = algorithm.lower() if algorithm else None
        return [answer]

    def _checksum_refusal(self, environ: dict[str, Any], query: str) -> str | None:
        """What S3 answers a part or a completion whose checksums do not follow the upload's algorithm, if so.

        S3 refuses a part that carries a checksum of another algorithm than the one its upload was created with
        (none: no checksum at all), and the completion of an upload created with an algorithm unless every part
        it lists carries that checksum. moto accepts both.
        """
        upload_id = (parse_qs(query).get("uploadId") or [""])[0]
        if upload_id not in self.upload_checksums:
            return None
        declared = self.upload_checksums[upload_id]
        if environ["REQUEST_METHOD"] == "PUT" and "partNumber=" in query:
            sent = [name.removeprefix("HTTP_X_AMZ_CHECKSUM_").lower() for name in environ
                    if name.startswith("HTTP_X_AMZ_CHECKSUM_") and name != "HTTP_X_AMZ_CHECKSUM_ALGORITHM"]  # fmt: skip
            sent += [t.removeprefix("x-amz-checksum-") for t in environ.get("HTTP_X_AMZ_TRAILER", "").split(",") if t]
            actual = sent[0] if sent else None
            if actual != declared:
                return (f"Checksum Type mismatch occurred, expected checksum Type: {declared}, "
                        f"actual checksum Type: {actual}")  # fmt: skip
            return None
        if environ["REQUEST_METHOD"] == "POST" and declared is not None:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            element = f"Checksum{declared.upper()}".encode()
            if body.count(b"<Part>") != body.count(b"<" + element + b">"):
                return (f"The upload was created using a {declared} checksum. The complete request must include the "
                        "checksum for each part.")  # fmt: skip
        return None

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )  # fmt: skip

    def connection(self) -> str:
        """An Airflow ``aws`` connection to this server, as a DAG author writes one (JSON form)."""
        import json

        extra = {"endpoint_url": self.url, "region_name": REGION}
        return json.dumps({"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY, "extra": extra})

    def new_bucket(self) -> str:
        name = f"feishu-vc-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        return [item["Key"] for item in self.client().list_objects_v2(Bucket=bucket).get("Contents", [])]

    def pending_uploads(self, bucket: str) -> list[str]:
        return [upload["Key"] for upload in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def touched_keys(self, bucket: str, since: int = 0) -> set[str]:
        """Every object key a request after ``requests[since]`` named in ``bucket``."""
        prefix = f"/{bucket}/"
        return {r.path.removeprefix(prefix) for r in self.requests[since:] if r.path.startswith(prefix)}
