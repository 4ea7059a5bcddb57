"""The reference docs generated from the code are committed as the code makes them, and the
OpenAPI schema describes every operation and field. Fast: no Kafka, no Ray."""

import json

import pytest

from pipeline.embed.config import PRESETS
from pipeline.settings import Settings
from services.docs_gen import DOCS, GENERATORS, REGENERATE, openapi_json

# FastAPI names the multipart form bodies itself; their fields are described.
GENERATED_BODIES = "Body_"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(openapi_json())


@pytest.mark.parametrize("path", list(GENERATORS), ids=lambda p: p.name)
def test_the_committed_doc_is_what_the_code_generates(path):
    committed = path.read_text() if path.exists() else ""
    assert committed == GENERATORS[path](), (
        f"docs/{path.relative_to(DOCS)} is stale: run `.venv/bin/{REGENERATE}` and commit it"
    )


def test_every_operation_parameter_and_field_is_described(schema):
    undescribed = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
        if not op.get("description")
    ]
    undescribed += [
        f"{method.upper()} {path} {parameter['name']}"
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
        for parameter in op.get("parameters", ())
        if not parameter.get("description")
    ]
    for name, component in schema["components"]["schemas"].items():
        if not component.get("description") and not name.startswith(GENERATED_BODIES):
            undescribed.append(name)
        undescribed += [
            f"{name}.{field}"
            for field, spec in component.get("properties", {}).items()
            if not spec.get("description")
        ]
    assert undescribed == []


def test_run_vocabulary_and_presets_are_enums(schema):
    components = schema["components"]["schemas"]
    run = components["RetrainRun"]["properties"]
    for field in ("status", "phase", "trigger"):
        assert "enum" in components[run[field]["$ref"].rsplit("/", 1)[1]], field
    # Only what a client should ask for; presets meant for tests live in the tests.
    assert components["TrainPreset"]["enum"] == ["default", "quick"]
    assert all(set(presets) == {"default", "quick"} for presets in PRESETS.values())


def test_every_setting_is_described():
    assert [name for name, f in Settings.model_fields.items() if not f.description] == []
