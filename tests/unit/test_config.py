import pytest

from ls_backend.config import ConfigError, Settings, parse_class_weights


def test_defaults_and_names_users_know():
    s = Settings.from_env({})
    assert s.label_studio_url is None and not s.auth_enabled and s.redis_url is None
    s = Settings.from_env(
        {
            "LABEL_STUDIO_URL": "http://localhost:8080/",
            "LABEL_STUDIO_API_KEY": "abc",
            "MODEL_DIR": "/tmp/m",
            "BASIC_AUTH_USER": "u",
            "BASIC_AUTH_PASS": "p",
            "REDIS_URL": "redis://:pw@localhost:6379/0",
            "SMARTSIZE_TAU": "0.001",
            "SMARTSIZE_CRITICALITY": "Defect=3, Scratch=2",
            "SMARTSIZE_IMAGE_SIZE": "96",
            "SMARTSIZE_PRIORITY_WEIGHTS": "uniqueness=0.2",
        }
    )
    assert s.label_studio_url == "http://localhost:8080" and s.auth_enabled
    assert s.criticality == {"Defect": 3.0, "Scratch": 2.0} and s.tau == 0.001
    assert s.embedder["image_size"] == 96
    assert s.priority_weights == {"uniqueness": 0.2}
    public = s.public()
    assert public["label_studio_api_key"] == "***" and public["basic_auth_pass"] == "***"
    assert "pw" not in public["redis_url"]
    assert "abc" not in repr(s) and "'p'" not in repr(s)


@pytest.mark.parametrize(
    "env, match",
    [
        ({"LABEL_STUDIO_URL": "localhost:8080"}, "LABEL_STUDIO_URL"),
        ({"BASIC_AUTH_USER": "u"}, "BASIC_AUTH_PASS"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"SMARTSIZE_TAU": "0"}, "SMARTSIZE_TAU"),
        ({"SMARTSIZE_TAU": "abc"}, "not a number"),
        ({"SMARTSIZE_BATCH_SIZE": "0"}, "SMARTSIZE_BATCH_SIZE"),
        ({"SMARTSIZE_DIVERSITY": "2"}, "SMARTSIZE_DIVERSITY"),
        ({"SMARTSIZE_WEIGHTS": "imagenet"}, "SMARTSIZE_WEIGHTS"),
        ({"SMARTSIZE_CRITICALITY": "Defect"}, "Class=weight"),
        ({"SMARTSIZE_CRITICALITY": "Defect=-1"}, ">= 0"),
        ({"SMARTSIZE_BLAS_THREADS": "abc"}, "SMARTSIZE_BLAS_THREADS"),
        ({"SMARTSIZE_PRIORITY_WEIGHTS": "novelty=1"}, "unknown signal"),
        ({"SMARTSIZE_PRIORITY_WEIGHTS": "uniqueness=-1"}, ">= 0"),
        ({"SMARTSIZE_BLAS_THREADS": "0"}, "SMARTSIZE_BLAS_THREADS"),
    ],
)
def test_invalid_configuration_fails_clearly(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


def test_require_label_studio():
    with pytest.raises(ConfigError, match="LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        Settings.from_env({}).require_label_studio()


def test_parse_class_weights_empty():
    assert parse_class_weights("") == {}
