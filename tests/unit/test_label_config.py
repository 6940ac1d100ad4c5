"""Label config parsing, annotation extraction and result shape (ls_backend.label_config)."""

import json

import numpy as np
import pytest

from ls_backend.label_config import (
    ClassificationConfig,
    UnsupportedLabelConfig,
    annotation_label,
    parse_label_config,
    prediction_result,
    to_ls_result,
)

IMAGE_CFG = """<View>
  <Image name="img" value="$photo"/>
  <Choices name="species" toName="img">
    <Choice value="b"/><Choice value="a"/><Choice value="c"/>
  </Choices>
</View>"""

TEXT_MULTI_CFG = """<View>
  <Header value="Pick topics"/>
  <Text name="txt" value="$body"/>
  <Choices name="topics" toName="txt" choice="multiple">
    <Choice value="sport"/><Choice value="politics"/><Choice value="tech" alias="technology"/>
  </Choices>
</View>"""


def _load(ls_fixtures, name):
    return json.loads((ls_fixtures / f"{name}.json").read_text())["json"]


def test_fixture_configs_parse(ls_fixtures):
    setup = _load(ls_fixtures, "ml_setup")
    predict = _load(ls_fixtures, "ml_predict")
    for xml in (setup["schema"], predict["label_config"]):
        cfg = parse_label_config(xml)
        assert cfg == ClassificationConfig(
            from_name="label",
            to_name="image",
            object_type="image",
            value_key="image",
            labels=("cat", "dog", "bird"),
            multi_label=False,
            value_is_url=True,
        )
        assert all(cfg.value_key in task["data"] for task in predict["tasks"])


def test_image_config_keeps_config_order():
    cfg = parse_label_config(IMAGE_CFG)
    assert (cfg.from_name, cfg.to_name, cfg.object_type, cfg.value_key) == (
        "species",
        "img",
        "image",
        "photo",
    )
    assert cfg.labels == ("b", "a", "c")
    assert cfg.label_index("c") == 2
    with pytest.raises(ValueError, match="not a choice"):
        cfg.label_index("zebra")


def test_text_multiple_choice_and_alias():
    cfg = parse_label_config(TEXT_MULTI_CFG)
    assert cfg.object_type == "text"
    assert cfg.value_key == "body"
    assert cfg.multi_label is True
    assert cfg.value_is_url is False
    assert cfg.labels == ("sport", "politics", "technology")  # alias is what results carry
    url_cfg = parse_label_config(
        TEXT_MULTI_CFG.replace('value="$body"', 'value="$u" valueType="url"')
    )
    assert url_cfg.value_is_url is True


@pytest.mark.parametrize(
    ("xml", "needle"),
    [
        ("<View><Image name='i' value='$x'/>", "not valid XML"),
        ("not xml at all", "not valid XML"),
        ("", "empty"),
        ("<View><Image name='i' value='$x'/></View>", "needs a <Choices>"),
        (
            "<View><Image name='i' value='$x'/><RectangleLabels name='r' toName='i'>"
            "<Label value='a'/></RectangleLabels></View>",
            "RectangleLabels",
        ),
        (
            "<View><Audio name='a' value='$x'/><Choices name='c' toName='a'>"
            "<Choice value='p'/><Choice value='q'/></Choices></View>",
            "<Audio",
        ),
        (
            "<View><Image name='i' value='$x'/><Choices name='c' toName='i'>"
            "<Choice value='p'/><Choice value='q'/></Choices><Choices name='d' toName='i'>"
            "<Choice value='p'/><Choice value='q'/></Choices></View>",
            "2 <Choices> controls",
        ),
        (
            "<View><Image name='i' value='$x'/><Choices name='c' toName='i'>"
            "<Choice value='only'/></Choices></View>",
            "at least 2",
        ),
        (
            "<View><Image name='i' value='$x'/><Choices name='c' toName='i' value='$opts'/></View>",
            "from task data",
        ),
        (
            "<View><Image name='i' value='$x'/><Choices name='c' toName='i' perRegion='true'>"
            "<Choice value='p'/><Choice value='q'/></Choices></View>",
            "perRegion",
        ),
    ],
)
def test_unsupported_configs(xml, needle):
    with pytest.raises(UnsupportedLabelConfig, match=needle):
        parse_label_config(xml)
    assert issubclass(UnsupportedLabelConfig, ValueError)


def test_several_choices_message_names_them_and_from_name_selects():
    xml = (
        "<View><Image name='i' value='$x'/><Choices name='quality' toName='i'>"
        "<Choice value='ok'/><Choice value='bad'/></Choices><Choices name='label' toName='i'>"
        "<Choice value='cat'/><Choice value='dog'/></Choices></View>"
    )
    with pytest.raises(UnsupportedLabelConfig) as err:
        parse_label_config(xml)
    assert "'quality'" in str(err.value) and "'label'" in str(err.value)
    assert parse_label_config(xml, from_name="label").labels == ("cat", "dog")
    with pytest.raises(UnsupportedLabelConfig, match="available"):
        parse_label_config(xml, from_name="nope")


def test_annotation_label_from_fixtures(ls_fixtures):
    predict = _load(ls_fixtures, "ml_predict")
    cfg = parse_label_config(predict["label_config"])
    first = predict["tasks"][0]
    assert [annotation_label(a, cfg) for a in first["annotations"]] == [["cat"]]
    created = _load(ls_fixtures, "ml_webhook_ANNOTATION_CREATED")
    assert annotation_label(created["annotation"], cfg) == ["dog"]
    bulk = _load(ls_fixtures, "webhook_ANNOTATIONS_CREATED")
    labels = [annotation_label(a, cfg) for a in bulk["annotation"]]
    assert labels and all(lab and set(lab) <= set(cfg.labels) for lab in labels)


def test_annotation_label_edge_cases():
    cfg = parse_label_config(TEXT_MULTI_CFG)
    item = {
        "from_name": "topics",
        "to_name": "txt",
        "type": "choices",
        "value": {"choices": ["politics", "sport", "politics", "removed-label"]},
    }
    assert annotation_label({"result": [item]}, cfg) == ["politics", "sport"]
    assert annotation_label({"result": [item], "was_cancelled": True}, cfg) == []
    other = dict(item, from_name="other")
    assert annotation_label({"result": [other]}, cfg) == []
    assert annotation_label({"result": []}, cfg) == []
    assert annotation_label({"result": None}, cfg) == []
    assert annotation_label({"result": [{"value": "garbage"}, 3]}, cfg) == []


def test_to_ls_result_shape(ls_fixtures):
    predict = _load(ls_fixtures, "ml_predict")
    cfg = parse_label_config(predict["label_config"])
    result = to_ls_result(cfg, ["dog"], 0.8)
    assert result == [
        {
            "from_name": "label",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": ["dog"]},
            "score": 0.8,
        }
    ]
    # same keys/values as the results Label Studio itself stored
    stored = predict["tasks"][0]["annotations"][0]["result"][0]
    same = to_ls_result(cfg, stored["value"]["choices"], 0.5)[0]
    assert {k: v for k, v in same.items() if k != "score"} == stored
    assert annotation_label({"result": result}, cfg) == ["dog"]
    json.dumps(result)
    with pytest.raises(ValueError, match="single-choice"):
        to_ls_result(cfg, ["cat", "dog"], 0.5)
    with pytest.raises(ValueError, match="not a choice"):
        to_ls_result(cfg, ["zebra"], 0.5)
    with pytest.raises(ValueError, match="score"):
        to_ls_result(cfg, ["cat"], 1.5)


def test_to_ls_result_multi_label():
    cfg = parse_label_config(TEXT_MULTI_CFG)
    result = to_ls_result(cfg, ["sport", "technology"], 0.6)
    assert result[0]["value"] == {"choices": ["sport", "technology"]}
    assert to_ls_result(cfg, [], 0.9) == []


def test_prediction_result_single_and_multiple_choice():
    single = parse_label_config(TEXT_MULTI_CFG.replace('"multiple"', '"single"'))
    multi = parse_label_config(TEXT_MULTI_CFG)
    k = len(multi.labels)
    p = np.full(k, 0.1)
    p[1], p[2] = 0.9, 0.6
    [item] = prediction_result(multi, p)
    assert item["value"]["choices"] == [multi.labels[1], multi.labels[2]]
    assert item["score"] == pytest.approx(0.6)  # the least certain label
    assert prediction_result(multi, np.full(k, 0.2)) == []  # nothing applies
    q = np.full(k, 0.5 / (k - 1))
    q[0] = 0.5
    [item] = prediction_result(single, q)
    assert item["value"]["choices"] == [single.labels[0]] and item["score"] == 0.5
    with pytest.raises(ValueError, match="probabilities"):
        prediction_result(multi, p[:-1])
    with pytest.raises(ValueError, match="within"):
        prediction_result(multi, [np.nan, 0.7, 0.1])
    with pytest.raises(ValueError, match="within"):
        prediction_result(multi, [1.2, 0.7, 0.1])
