"""The one module that talks to Label Studio (1.23.2), through label-studio-sdk 2.1.2.

The SDK provides the transport: base URL handling and authentication, including the exchange of
a personal access token (a JWT refresh token) for short-lived access tokens. Requests go through
the SDK's HTTP client and come back as plain JSON dicts, because the SDK's typed models are lossy
for what the backend needs (full task payloads, annotation results) and slow to build for 10k+
tasks. Retries with exponential backoff are ours: the SDK would also retry POSTs on 5xx, which
is not safe for imports, so its own retries are switched off.

Facts about the server this relies on are in ``shared/design/LABEL_STUDIO.md``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

log = logging.getLogger(__name__)

UNCERTAINTY_SAMPLING = "Uncertainty sampling"
STATUS_BEGIN = "--- smartsize status ---"
STATUS_END = "--- end smartsize status ---"

_JWT = re.compile(r"^[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]+=*$")
_LEGACY = re.compile(r"^[0-9a-fA-F]{40}$")
# Task keys iter_tasks asks for by default (Label Studio's ``include`` parameter).
TASK_FIELDS = (
    "id",
    "data",
    "meta",
    "annotations",
    "is_labeled",
    "total_annotations",
    "cancelled_annotations",
    "created_at",
    "updated_at",
)
# Annotation keys inside each task: Label Studio applies ``include`` to the nested annotations too.
ANNOTATION_FIELDS = (
    "id",
    "result",
    "was_cancelled",
    "ground_truth",
    "completed_by",
    "lead_time",
    "created_at",
    "updated_at",
)
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})


class LabelStudioError(RuntimeError):
    """A Label Studio request failed. The message names the endpoint, never the token."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        endpoint: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.endpoint = endpoint
        self.body = body


def token_kind(api_key: str) -> str:
    """``"pat"`` for a personal access token (a JWT), ``"legacy"`` for a 40-hex legacy token,
    ``"unknown"`` otherwise (sent as a legacy ``Token`` header, as the SDK does)."""
    key = api_key.strip()
    if _JWT.match(key):
        head = key.split(".", 1)[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except ValueError:
            return "unknown"
        return "pat" if isinstance(header, dict) and "alg" in header else "unknown"
    if _LEGACY.match(key):
        return "legacy"
    return "unknown"


def replace_status_block(description: str | None, block_text: str | None) -> str:
    """Return ``description`` with the smartsize status block set to ``block_text``.

    The block is delimited by the lines ``--- smartsize status ---`` and
    ``--- end smartsize status ---``. An existing block is replaced in place (extra stale blocks
    are dropped), otherwise it is appended after the user's own text. An empty or ``None``
    ``block_text`` removes the block. The user's text outside the block is kept as written.
    """
    text = (description or "").replace("\r\n", "\n")
    pattern = re.compile(
        r"^" + re.escape(STATUS_BEGIN) + r"$.*?^" + re.escape(STATUS_END) + r"$",
        re.MULTILINE | re.DOTALL,
    )
    new_block = ""
    if block_text and block_text.strip():
        new_block = f"{STATUS_BEGIN}\n{block_text.strip(chr(10))}\n{STATUS_END}"
    match = pattern.search(text)
    if match is None:
        before, after = text, ""
    else:
        before, after = text[: match.start()], pattern.sub("", text[match.end() :])
    parts = (before.rstrip(), new_block, after.strip())
    # Label Studio trims the description, so the result carries no outer whitespace either.
    return "\n\n".join(p for p in parts if p).strip()


def _short(body: str, limit: int = 300) -> str:
    body = " ".join(body.split())
    return body if len(body) <= limit else body[:limit] + "..."


class LabelStudioClient:
    """Plain methods over Label Studio's API, returning JSON dicts.

    ``api_key`` may be a personal access token (JWT; exchanged for access tokens by the SDK) or
    a legacy token. ``timeout`` is the read timeout per request in seconds (connecting has its
    own shorter limit); ``retries`` is how many times an idempotent request is retried on a
    connection error, a timeout, 429 or 5xx, with exponential backoff starting at
    ``backoff`` seconds. Non-idempotent POSTs are retried only when the connection could not be
    made at all (nothing was sent).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float = 30,
        retries: int = 3,
        backoff: float = 0.5,
        connect_timeout: float = 5.0,
    ) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise LabelStudioError(f"Label Studio URL must start with http:// or https://: {url!r}")
        if not api_key or not api_key.strip():
            raise LabelStudioError("Label Studio API key is empty (set LABEL_STUDIO_API_KEY)")
        self.url = url.rstrip("/")
        self.token_kind = token_kind(api_key)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self._api_key = api_key.strip()
        self._httpx = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            follow_redirects=True,
        )
        try:
            self.sdk = LabelStudio(
                base_url=self.url, api_key=self._api_key, httpx_client=self._httpx, max_retries=0
            )
        except ApiError as e:  # an expired or malformed PAT is rejected at construction
            raise LabelStudioError(
                f"Label Studio API key rejected: {self._describe_body(e.body)}",
                status_code=e.status_code,
            ) from None
        self._http = self.sdk._client_wrapper.httpx_client

    def __repr__(self) -> str:
        return f"LabelStudioClient(url={self.url!r}, token_kind={self.token_kind!r})"

    def close(self) -> None:
        self._httpx.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ transport

    def _describe_body(self, body: Any) -> str:
        text = body if isinstance(body, str) else repr(body)
        return _short(text.replace(self._api_key, "<token>"))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
        allow_404: bool = False,
    ) -> Any:
        """One API call; returns the decoded JSON (``None`` for an empty body or an allowed 404).

        Raises :class:`LabelStudioError` after the retries are spent.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        endpoint = path if path.startswith("/") else "/" + path
        options: dict[str, Any] = {"max_retries": 0}
        if timeout is not None:
            options["timeout_in_seconds"] = timeout
        attempt = 0
        while True:
            retryable = False
            try:
                resp = self._http.request(
                    endpoint.lstrip("/"),
                    method=method,
                    params=params,
                    json=json,
                    request_options=options,
                )
            except httpx.ConnectError as e:
                retryable = True  # nothing was sent
                error = LabelStudioError(
                    f"{method} {endpoint}: cannot connect to Label Studio at {self.url} "
                    f"({type(e).__name__}: {_short(str(e), 120)})",
                    method=method,
                    endpoint=endpoint,
                )
            except httpx.TimeoutException as e:
                retryable = idempotent
                error = LabelStudioError(
                    f"{method} {endpoint}: Label Studio at {self.url} timed out "
                    f"({type(e).__name__})",
                    method=method,
                    endpoint=endpoint,
                )
            except httpx.TransportError as e:
                retryable = idempotent
                error = LabelStudioError(
                    f"{method} {endpoint}: transport error talking to Label Studio at {self.url} "
                    f"({type(e).__name__}: {_short(str(e), 120)})",
                    method=method,
                    endpoint=endpoint,
                )
            except ApiError as e:  # raised by the SDK while exchanging the PAT for an access token
                retryable = (e.status_code or 0) >= 500
                error = LabelStudioError(
                    f"{method} {endpoint}: Label Studio refused the personal access token "
                    f"(POST /api/token/refresh/ -> HTTP {e.status_code}: "
                    f"{self._describe_body(e.body)})",
                    status_code=e.status_code,
                    method=method,
                    endpoint="/api/token/refresh/",
                )
            except ValueError as e:  # a non-JSON answer to the token refresh
                error = LabelStudioError(
                    f"{method} {endpoint}: unexpected answer from {self.url} while refreshing the "
                    f"access token ({_short(str(e), 120)}); is this a Label Studio server?",
                    method=method,
                    endpoint="/api/token/refresh/",
                )
            else:
                if resp.status_code < 400:
                    if not resp.content:
                        return None
                    try:
                        return resp.json()
                    except ValueError:
                        raise LabelStudioError(
                            f"{method} {endpoint}: HTTP {resp.status_code} but the body is not "
                            f"JSON: {self._describe_body(resp.text)}",
                            status_code=resp.status_code,
                            method=method,
                            endpoint=endpoint,
                        ) from None
                if resp.status_code == 404 and allow_404:
                    return None
                retryable = idempotent and (resp.status_code >= 500 or resp.status_code == 429)
                hint = ""
                if resp.status_code == 401:
                    hint = f" (check LABEL_STUDIO_API_KEY; a {self.token_kind} token was sent)"
                error = LabelStudioError(
                    f"{method} {endpoint}: HTTP {resp.status_code}{hint}: "
                    f"{self._describe_body(resp.text)}",
                    status_code=resp.status_code,
                    method=method,
                    endpoint=endpoint,
                    body=self._describe_body(resp.text),
                )
            if not retryable or attempt >= self.retries:
                raise error
            delay = self.backoff * (2**attempt)
            log.warning("%s; retrying in %.1f s (%d/%d)", error, delay, attempt + 1, self.retries)
            time.sleep(delay)
            attempt += 1

    # -------------------------------------------------------------------------------- users

    def whoami(self) -> dict:
        """The user this client acts as (``GET /api/current-user/whoami``)."""
        return self.request("GET", "/api/current-user/whoami")

    # ------------------------------------------------------------------------------ projects

    def get_project(self, project_id: int) -> dict:
        return self.request("GET", f"/api/projects/{int(project_id)}")

    def create_project(self, title: str, label_config: str, **fields: Any) -> dict:
        """Create a project; extra ``fields`` (e.g. ``description``) go into the POST body."""
        body = {"title": title, "label_config": label_config, **fields}
        return self.request("POST", "/api/projects", json=body)

    def update_project(self, project_id: int, **fields: Any) -> dict:
        """PATCH project fields. Note: every project PATCH fires a PROJECT_UPDATED webhook."""
        return self.request("PATCH", f"/api/projects/{int(project_id)}", json=fields)

    def delete_project(self, project_id: int) -> None:
        self.request("DELETE", f"/api/projects/{int(project_id)}")

    # --------------------------------------------------------------------------------- tasks

    def import_tasks(
        self, project_id: int, tasks: Sequence[dict], chunk_size: int = 1000
    ) -> list[int]:
        """Import tasks (each ``{"data": {...}}``); returns the new task ids in order."""
        ids: list[int] = []
        for start in range(0, len(tasks), max(1, chunk_size)):
            chunk = list(tasks[start : start + chunk_size])
            out = self.request(
                "POST",
                f"/api/projects/{int(project_id)}/import",
                params={"return_task_ids": "true"},
                json=chunk,
                timeout=300,
            )
            got = list((out or {}).get("task_ids") or [])
            if len(got) != len(chunk):
                raise LabelStudioError(
                    f"POST /api/projects/{project_id}/import: sent {len(chunk)} tasks, got "
                    f"{len(got)} task ids back ({self._describe_body(out)})",
                    endpoint=f"/api/projects/{project_id}/import",
                )
            ids.extend(int(i) for i in got)
        return ids

    def get_task(self, task_id: int) -> dict:
        return self.request("GET", f"/api/tasks/{int(task_id)}")

    def iter_tasks(
        self,
        project_id: int,
        page_size: int = 500,
        fields: Sequence[str] | None = TASK_FIELDS,
        annotation_fields: Sequence[str] = ANNOTATION_FIELDS,
        resolve_uri: bool = False,
    ) -> Iterator[dict]:
        """All tasks of a project, paged (``GET /api/tasks``), in task id order.

        ``fields`` limits the task keys returned and ``annotation_fields`` the keys of each
        annotation (Label Studio's ``include`` parameter applies to both levels; ``fields=None``
        returns everything, including predictions, ~3x slower). ``resolve_uri=False`` keeps
        ``data`` as stored (stable for content hashing; cloud URIs are not presigned).
        """
        page = 1
        seen: set[int] = set()
        while True:
            params: dict[str, Any] = {
                "project": int(project_id),
                "page": page,
                "page_size": int(page_size),
                "fields": "all",
                "resolve_uri": "true" if resolve_uri else "false",
            }
            if fields is not None:
                params["include"] = ",".join(dict.fromkeys(["id", *fields, *annotation_fields]))
            out = self.request("GET", "/api/tasks", params=params, allow_404=True)
            if not out:  # 404 "Invalid page.": past the last page
                return
            tasks = out.get("tasks", []) if isinstance(out, dict) else list(out)
            for task in tasks:
                if task["id"] not in seen:  # pages can shift while tasks are added or deleted
                    seen.add(task["id"])
                    yield task
            total = out.get("total") if isinstance(out, dict) else None
            if not tasks or total is None or page * int(page_size) >= total:
                return
            page += 1

    def update_task_data(
        self,
        task_id: int,
        updates: dict[str, Any],
        remove_keys: Iterable[str] = (),
        current: dict[str, Any] | None = None,
    ) -> dict:
        """Set ``updates`` and drop ``remove_keys`` in a task's data; other keys are kept.

        Label Studio's PATCH replaces the whole data dict, so this reads, merges and writes back
        (skipping the write when nothing changes). ``current``: the task's data as just read
        (e.g. by ``iter_tasks``), which saves the read. Returns the resulting data dict.
        """
        if current is None:
            current = self.get_task(task_id).get("data")
        data = dict(current or {})
        new = dict(data)
        for key in remove_keys:
            new.pop(key, None)
        new.update(updates)
        if new == data:
            return data
        out = self.request("PATCH", f"/api/tasks/{int(task_id)}", json={"data": new})
        return (out or {}).get("data", new)

    def next_task(self, project_id: int) -> dict | None:
        """The task Label Studio's label stream serves next to this client's user, or ``None``.

        Note: Label Studio locks the returned task to this user (``TASK_LOCK_TTL``).
        """
        out = self.request("GET", f"/api/projects/{int(project_id)}/next", allow_404=True)
        if not out or not isinstance(out, dict) or "id" not in out:
            return None
        return out

    # --------------------------------------------------------------------------- annotations

    def create_annotation(
        self,
        task_id: int,
        result: list[dict],
        was_cancelled: bool = False,
        lead_time: float | None = None,
        **fields: Any,
    ) -> dict:
        """Annotate a task as this client's user would from the labeling UI."""
        body: dict[str, Any] = {"result": result, "was_cancelled": bool(was_cancelled), **fields}
        if lead_time is not None:
            body["lead_time"] = float(lead_time)
        return self.request("POST", f"/api/tasks/{int(task_id)}/annotations", json=body)

    # --------------------------------------------------------------------------- predictions

    def import_predictions(
        self, project_id: int, predictions: Sequence[dict], chunk_size: int = 5000
    ) -> int:
        """Bulk-create predictions ``[{task, result, score, model_version}]``; returns the count.

        Label Studio 1.23.2 silently drops predictions that fail validation (it only logs them),
        so a count mismatch raises. It also ignores ``cluster`` here. Each chunk is one POST
        that re-counts every task of the project, so chunks are large. Importing does not change
        the project's model_version (see :meth:`set_model_version`).
        """
        created = 0
        for start in range(0, len(predictions), max(1, chunk_size)):
            chunk = list(predictions[start : start + chunk_size])
            out = self.request(
                "POST",
                f"/api/projects/{int(project_id)}/import/predictions",
                json=chunk,
                timeout=600,
            )
            n = int((out or {}).get("created", 0))
            created += n
            if n != len(chunk):
                raise LabelStudioError(
                    f"POST /api/projects/{project_id}/import/predictions: sent {len(chunk)} "
                    f"predictions, Label Studio created {n} (invalid results are dropped; check "
                    "from_name/to_name/type against the label config)",
                    endpoint=f"/api/projects/{project_id}/import/predictions",
                )
        return created

    def list_model_versions(self, project_id: int) -> dict[str, int]:
        """``{model_version: prediction count}``, most recently written first (includes the
        project's current model_version with 0 when it has no predictions)."""
        out = self.request("GET", f"/api/projects/{int(project_id)}/model-versions/")
        return {str(k): int(v) for k, v in (out or {}).items()}

    def set_model_version(
        self, project_id: int, version: str, sampling: str | None = UNCERTAINTY_SAMPLING
    ) -> dict:
        """Point the label stream at ``version`` (and set ``sampling``) in one PATCH."""
        fields: dict[str, Any] = {"model_version": version}
        if sampling is not None:
            fields["sampling"] = sampling
        return self.update_project(project_id, **fields)

    def delete_predictions(
        self, project_id: int, model_version: str, allow_current: bool = False
    ) -> int:
        """Delete every prediction of ``model_version`` in a project; returns how many.

        One request (``DELETE /api/projects/{id}/model-versions/``). Deleting the project's
        current model_version would also reset it to none (random sampling), so that needs
        ``allow_current=True``.
        """
        if not model_version:
            raise ValueError("model_version is required (an empty one would delete everything)")
        if not allow_current:
            current = self.get_project(project_id).get("model_version")
            if current == model_version:
                raise LabelStudioError(
                    f"refusing to delete the current model_version {model_version!r} of project "
                    f"{project_id} (pass allow_current=True)"
                )
        out = self.request(
            "DELETE",
            f"/api/projects/{int(project_id)}/model-versions/",
            json={"model_version": model_version},
            timeout=600,
        )
        return int((out or {}).get("deleted_predictions", 0))

    # ----------------------------------------------------------------------------- status

    def set_status_block(self, project_id: int, block_text: str | None) -> bool:
        """Write the smartsize status block into the project description, keeping the user's
        text; an empty ``block_text`` removes it. Returns whether a PATCH was made (none when
        the description already says the same, to avoid needless PROJECT_UPDATED webhooks)."""
        current = self.get_project(project_id).get("description") or ""
        new = replace_status_block(current, block_text)
        if new == current.strip():
            return False
        self.update_project(project_id, description=new)
        return True

    # --------------------------------------------------------------------------------- views

    def list_views(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/dm/views", params={"project": int(project_id)}) or []

    def ensure_view(
        self,
        project_id: int,
        title: str,
        filters: dict | None = None,
        ordering: Sequence[str] = (),
    ) -> int:
        """Create the Data Manager view ``title`` or update the existing one; returns its id.

        ``filters`` is ``{"conjunction": "and", "items": [...]}``; ``ordering`` like
        ``["-tasks:data.priority"]``. Nothing is written when the view already matches.
        """
        filters = filters or {"conjunction": "and", "items": []}
        wanted = {"title": title, "filters": filters, "ordering": list(ordering)}
        for view in self.list_views(project_id):
            data = view.get("data") or {}
            if data.get("title") != title:
                continue
            if all(data.get(k) == v for k, v in wanted.items()):
                return int(view["id"])
            merged = {**data, **wanted}
            self.request(
                "PATCH",
                f"/api/dm/views/{int(view['id'])}",
                json={"project": int(project_id), "data": merged},
            )
            return int(view["id"])
        out = self.request(
            "POST", "/api/dm/views", json={"project": int(project_id), "data": wanted}
        )
        return int(out["id"])

    # ----------------------------------------------------------------------------- ML backend

    def list_ml_backends(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/ml", params={"project": int(project_id)}) or []

    def list_webhooks(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/webhooks", params={"project": int(project_id)}) or []

    def connect_ml_backend(
        self,
        project_id: int,
        url: str,
        title: str,
        basic_auth: tuple[str, str] | None = None,
        is_interactive: bool = False,
    ) -> dict:
        """Connect an ML backend (POST /api/ml; Label Studio calls its /health and /setup).

        Label Studio then creates a project webhook to ``<url>/webhook`` without credentials;
        with ``basic_auth=(user, password)`` that webhook is patched to send the
        ``Authorization: Basic ...`` header. Returns the ML backend dict, with ``webhook_id``
        added when the webhook was found.
        """
        url = url.rstrip("/")
        body: dict[str, Any] = {
            "url": url,
            "project": int(project_id),
            "title": title,
            "is_interactive": bool(is_interactive),
        }
        if basic_auth is not None:
            user, password = basic_auth
            body.update(
                {"auth_method": "BASIC_AUTH", "basic_auth_user": user, "basic_auth_pass": password}
            )
        backend = self.request("POST", "/api/ml", json=body, timeout=60)
        hook_url = f"{url}/webhook"
        for hook in self.list_webhooks(project_id):
            if (hook.get("url") or "").rstrip("/") != hook_url:
                continue
            backend["webhook_id"] = hook["id"]
            if basic_auth is not None:
                cred = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
                headers = dict(hook.get("headers") or {})
                headers["Authorization"] = f"Basic {cred}"
                self.request("PATCH", f"/api/webhooks/{int(hook['id'])}", json={"headers": headers})
            break
        return backend

    def train(self, ml_backend_id: int) -> Any:
        """Press the Train button: POST /api/ml/{id}/train (Label Studio sends START_TRAINING)."""
        return self.request("POST", f"/api/ml/{int(ml_backend_id)}/train", json={}, timeout=60)
