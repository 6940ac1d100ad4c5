"""Property-based fuzzing of the request parsers (hypothesis) and schemathesis against
docs/openapi.yaml, in-process through Flask's WSGI test client: whatever the body, the answer
is never a 5xx. Unit level (no services): the app is the real one with its real in-process
queue; cycles it starts fail fast and cleanly because no Label Studio is configured. Bounded:
a fixed number of examples, no shrinking-heavy deadlines."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ls_backend.app import create_app
from ls_backend.config import Settings
from ls_backend.demo_project import choices_label_config
from tests.reliability.conftest import record_figures

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
N_EXAMPLES = 120
CONFIG = choices_label_config(["cat", "dog"])
TRIED: dict[str, int] = {}

_app = None


def app():
    """One app for the module (hypothesis runs many examples through it)."""
    global _app
    if _app is None:
        _app = create_app(Settings(model_dir=Path(tempfile.mkdtemp(prefix="smartsize-fuzz-"))))
    return _app


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
project_values = (
    st.integers(-5, 10**20)
    | st.text(max_size=20)
    | st.from_regex(r"\A[0-9]{1,6}\.[0-9]{1,10}\Z")
    | st.fixed_dictionaries({"id": json_values})
    | json_values
)
media_values = (
    st.sampled_from(
        [
            "data:image/png;base64,iVBORw0KGgo=",
            "data:image/png;base64,!!",
            "http://169.254.169.254/",
            "http://127.0.0.1:1/x.png",
            "file:///etc/passwd",
            "/data/local-files/?d=../../etc/passwd",
            "",
        ]
    )
    | json_values
)
tasks = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.integers(-(2**70), 2**70) | json_values,
            "data": st.fixed_dictionaries({}, optional={"image": media_values}) | json_values,
            "project": project_values,
            "annotations": json_values,
        },
    )
    | json_values,
    max_size=4,
)
label_configs = st.sampled_from(
    [CONFIG, CONFIG.replace('"single"', '"multiple"'), "<View/>", "<View>", "not xml", ""]
) | st.text(max_size=40)
actions = (
    st.sampled_from(
        ["ANNOTATION_CREATED", "ANNOTATIONS_DELETED", "START_TRAINING", "PROJECT_UPDATED", ""]
    )
    | json_values
)


def bodies(keys: dict) -> st.SearchStrategy:
    """A JSON object with any subset of ``keys`` (each with its strategy), sometimes extra."""
    return st.fixed_dictionaries({}, optional=keys) | st.dictionaries(
        st.text(max_size=10), json_values, max_size=3
    )


ROUTES = {
    "/webhook": bodies({"action": actions, "project": project_values, "annotation": json_values}),
    "/setup": bodies(
        {"project": project_values, "schema": label_configs, "extra_params": json_values}
    ),
    "/predict": bodies(
        {
            "tasks": tasks,
            "project": project_values,
            "label_config": label_configs,
            "params": json_values,
        }
    ),
}
raw_bodies = st.binary(max_size=64) | st.sampled_from(
    [b"[" * 20_000, b'{"a":' * 5000, b"\xff\xfe", b"{}" * 100, b"null", b"1e999999"]
)


def _post(route: str, data: bytes) -> None:
    r = app().test_client().post(route, data=data, content_type="application/json")
    assert r.status_code < 500, (route, data[:200], r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        assert json.loads(r.get_data())["error"]
    TRIED[route] = TRIED.get(route, 0) + 1


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_fuzz_json_bodies(route):
    @settings(
        max_examples=N_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=ROUTES[route])
    def run(body):
        _post(route, json.dumps(body, allow_nan=True).encode())

    run()


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_fuzz_raw_bodies(route):
    @settings(max_examples=40, deadline=None, database=None)
    @given(data=raw_bodies)
    def run(data):
        _post(route, data)

    run()


def test_huge_bodies_are_413():
    client = app().test_client()
    big = b"{" + b" " * (64 * 1024 * 1024)
    for route in ROUTES:
        r = client.post(route, data=big, content_type="application/json")
        assert r.status_code == 413 and r.get_json()["error"], route
        TRIED[route + " (huge)"] = 1


schema = schemathesis.openapi.from_path(OPENAPI)


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None)
def test_openapi_schemathesis(case):
    response = case.call(app=app())
    assert response.status_code < 500, (case.path, case.body, response.text[:300])
    key = f"schemathesis {case.method} {case.path}"
    TRIED[key] = TRIED.get(key, 0) + 1


def test_zz_record_inputs_tried():
    record_figures("fuzz", {"inputs_by_route": dict(sorted(TRIED.items()))})
