"""Read a Label Studio project's label config: which Choices control to predict, on what object.

Parsing goes through label-studio-sdk's ``LabelInterface`` (the same parser Label Studio uses),
never through hand-written XML handling. smartsize supports whole-task classification: exactly
one ``<Choices>`` control attached to one ``<Image>`` or ``<Text>`` object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from label_studio_sdk.label_interface import LabelInterface
from label_studio_sdk.label_interface.control_tags import ChoicesTag

from scoring.multilabel import DECISION_THRESHOLD

__all__ = [
    "ClassificationConfig",
    "UnsupportedLabelConfig",
    "annotation_label",
    "chose_none",
    "is_submitted",
    "parse_label_config",
    "prediction_result",
    "to_ls_result",
]

# LS object tag name (lower case) -> smartsize object type.
_OBJECT_TYPES = {"image": "image", "text": "text"}


class UnsupportedLabelConfig(ValueError):
    """The label config is not one smartsize can serve (the message says why and what to do)."""


@dataclass(frozen=True)
class ClassificationConfig:
    """The one classification task a label config describes.

    Attributes:
        from_name: name of the ``<Choices>`` control (``from_name`` in results).
        to_name: name of the object tag it labels (``to_name`` in results).
        object_type: ``"image"`` or ``"text"``.
        value_key: key of the task's ``data`` dict holding the media (``"image"`` for
            ``value="$image"``).
        labels: choice values in config order (a Choice's ``alias`` wins over its ``value``,
            as in Label Studio's results).
        multi_label: ``choice="multiple"``.
        value_is_url: for Text objects, ``valueType="url"`` (the task value is a URL to fetch,
            not the text itself). Always True for images.
    """

    from_name: str
    to_name: str
    object_type: str
    value_key: str
    labels: tuple[str, ...]
    multi_label: bool = False
    value_is_url: bool = False

    def label_index(self, label: str) -> int:
        """Index of ``label`` in :attr:`labels` (``ValueError`` if unknown)."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(
                f"label {label!r} is not a choice of control {self.from_name!r}; "
                f"known: {list(self.labels)}"
            ) from None


def _describe(control: Any) -> str:
    return f"<{control.tag} name={control.name!r} toName={','.join(control.to_name or [])!r}>"


def parse_label_config(xml: str, from_name: str | None = None) -> ClassificationConfig:
    """Parse a label config into a :class:`ClassificationConfig`.

    Args:
        xml: the project's label config (``label_config`` / ``schema`` in LS requests).
        from_name: pick this Choices control when the config has several.

    Raises:
        UnsupportedLabelConfig: invalid XML; no Choices control on an Image/Text object;
            several such controls (and ``from_name`` not given); dynamic or empty choices;
            a Choices control attached to several objects; per-region choices.
    """
    if not isinstance(xml, str) or not xml.strip():
        raise UnsupportedLabelConfig("label config is empty")
    try:
        interface = LabelInterface(xml)
    except Exception as exc:  # the SDK raises lxml / its own syntax errors
        raise UnsupportedLabelConfig(f"label config is not valid XML: {exc}") from exc

    choices = [c for c in interface.controls if isinstance(c, ChoicesTag)]
    if not choices:
        found = ", ".join(_describe(c) for c in interface.controls) or "no control tags"
        raise UnsupportedLabelConfig(
            "smartsize needs a <Choices> control on an <Image> or <Text> object "
            f"(whole-task classification); this config has {found}"
        )

    objects = {o.name: o for o in interface.objects}

    def object_of(control: Any) -> Any | None:
        names = control.to_name or []
        if len(names) != 1:
            return None
        obj = objects.get(names[0])
        if obj is None or obj.tag.lower() not in _OBJECT_TYPES:
            return None
        return obj

    candidates = [c for c in choices if object_of(c) is not None]
    if from_name is not None:
        picked = [c for c in choices if c.name == from_name]
        if not picked:
            raise UnsupportedLabelConfig(
                f"no <Choices> control named {from_name!r}; available: {[c.name for c in choices]}"
            )
        control = picked[0]
        if object_of(control) is None:
            raise UnsupportedLabelConfig(
                f"{_describe(control)} must label exactly one <Image> or <Text> object"
            )
    elif not candidates:
        described = ", ".join(
            f"{_describe(c)} -> "
            + ", ".join(
                f"<{objects[n].tag} name={n!r}>" if n in objects else f"missing object {n!r}"
                for n in (c.to_name or [])
            )
            for c in choices
        )
        raise UnsupportedLabelConfig(
            "smartsize needs a <Choices> control labelling exactly one <Image> or <Text> object; "
            f"found {described}"
        )
    elif len(candidates) > 1:
        names = [c.name for c in candidates]
        raise UnsupportedLabelConfig(
            f"label config has {len(candidates)} <Choices> controls on Image/Text objects "
            f"({', '.join(repr(n) for n in names)}); smartsize predicts exactly one: keep only "
            f"the one to predict (e.g. {names[0]!r}) or select it with from_name"
        )
    else:
        control = candidates[0]

    obj = object_of(control)
    assert obj is not None

    if str(control.attr.get("perRegion", "")).lower() == "true":
        raise UnsupportedLabelConfig(
            f'{_describe(control)} has perRegion="true"; smartsize only predicts whole-task choices'
        )
    if control.dynamic_value or control.attr.get("value"):
        raise UnsupportedLabelConfig(
            f"{_describe(control)} takes its choices from task data (value=...); smartsize needs "
            "the choices listed in the config"
        )
    labels = tuple(control.labels or ())
    if len(labels) < 2:
        raise UnsupportedLabelConfig(
            f"{_describe(control)} has {len(labels)} choice(s); at least 2 are needed"
        )

    value = obj.value or ""
    if not isinstance(value, str) or not value.startswith("$") or len(value) < 2:
        raise UnsupportedLabelConfig(
            f"<{obj.tag} name={obj.name!r}> must read its content from task data "
            f'(value="$key"), got value={value!r}'
        )
    object_type = _OBJECT_TYPES[obj.tag.lower()]
    value_is_url = object_type == "image" or str(obj.attr.get("valueType", "")).lower() == "url"

    return ClassificationConfig(
        from_name=control.name,
        to_name=obj.name,
        object_type=object_type,
        value_key=value[1:],
        labels=labels,
        multi_label=bool(control.is_multiple_choice),
        value_is_url=value_is_url,
    )


def is_submitted(annotation: Any) -> bool:
    """True for an annotation that was submitted (not skipped) with a well-formed result list."""
    if not isinstance(annotation, Mapping) or annotation.get("was_cancelled"):
        return False
    result = annotation.get("result")
    return isinstance(result, Sequence) and not isinstance(result, (str, bytes))


def _raw_choices(annotation: Any, config: ClassificationConfig) -> list[str] | None:
    """Every choice string of ``config``'s control in a submitted annotation, in order (None
    when the annotation is skipped or malformed)."""
    if not is_submitted(annotation):
        return None
    chosen: list[str] = []
    for item in annotation["result"]:
        if not isinstance(item, Mapping):
            continue
        if item.get("from_name") != config.from_name or item.get("to_name") != config.to_name:
            continue
        if str(item.get("type", "choices")).lower() != "choices":
            continue
        value = item.get("value")
        picks = value.get("choices") if isinstance(value, Mapping) else None
        if not isinstance(picks, Sequence) or isinstance(picks, (str, bytes)):
            continue
        chosen += [label for label in picks if isinstance(label, str)]
    return chosen


def annotation_label(annotation: Mapping[str, Any], config: ClassificationConfig) -> list[str]:
    """Labels chosen in one Label Studio annotation for ``config``'s control.

    Returns ``[]`` for cancelled (skipped) annotations, annotations without a result for this
    control, and malformed results. Choices that are not (or no longer) in the config are
    dropped; the order of the remaining ones follows the annotation, without duplicates.
    """
    known = set(config.labels)
    chosen: list[str] = []
    for label in _raw_choices(annotation, config) or []:
        if label in known and label not in chosen:
            chosen.append(label)
    return chosen


def chose_none(annotation: Mapping[str, Any], config: ClassificationConfig) -> bool:
    """True when a submitted annotation chose nothing for ``config``'s control: for multiple
    choice, the answer "none of the labels apply". An annotation whose only choices are no
    longer in the config (a renamed or removed choice) is NOT "none": it is stale."""
    raw = _raw_choices(annotation, config)
    return raw is not None and not raw


def to_ls_result(
    config: ClassificationConfig, labels: Sequence[str], score: float
) -> list[dict[str, Any]]:
    """One Label Studio ``result`` list choosing ``labels`` for ``config``'s control.

    ``score`` (the model's confidence in this choice, 0..1) is attached to the result item.
    An empty ``labels`` (a multi-label prediction with nothing above threshold) gives ``[]``.

    Raises:
        ValueError: an unknown label, or not exactly one label for a single-choice control.
    """
    labels = list(labels)
    for label in labels:
        config.label_index(label)
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate labels in {labels}")
    if not config.multi_label and len(labels) != 1:
        raise ValueError(
            f"control {config.from_name!r} is single-choice: exactly one label needed, got {labels}"
        )
    if not labels:
        return []
    score = float(score)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be within [0, 1], got {score}")
    return [
        {
            "from_name": config.from_name,
            "to_name": config.to_name,
            "type": "choices",
            "value": {"choices": labels},
            "score": score,
        }
    ]


def prediction_result(config: ClassificationConfig, probs: Sequence[float]) -> list[dict[str, Any]]:
    """The Label Studio ``result`` a head's probabilities for one task predict.

    Single choice: the most probable class, scored with its probability. Multiple choice
    (``probs`` independent per label): every label with P >= ``DECISION_THRESHOLD`` (0.5, as
    :func:`scoring.multilabel.multilabel_decisions`), scored with the confidence of the least
    certain label, ``min_j max(p_j, 1 - p_j)`` (it does not shrink with the number of labels,
    as the probability of the whole set would); ``[]`` when no label reaches the threshold (the
    model predicts that none applies).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(config.labels),):
        raise ValueError(f"expected {len(config.labels)} probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probabilities must be finite and within [0, 1], got {p.tolist()}")
    if config.multi_label:
        chosen = [c for c, pj in zip(config.labels, p, strict=True) if pj >= DECISION_THRESHOLD]
        return to_ls_result(config, chosen, float(np.min(np.maximum(p, 1.0 - p))))
    j = int(p.argmax())
    return to_ls_result(config, [config.labels[j]], float(p[j]))
