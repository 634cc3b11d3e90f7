"""Class names as the public pages show them."""

import pytest

from classifier.templatetags.element_names import element_name


@pytest.mark.parametrize(
    ("class_name", "words"),
    [
        ("altar", "altar"),
        ("bell_tower", "bell tower"),
        ("dome(inner)", "inner dome"),
        ("dome(outer)", "outer dome"),
        ("flying_buttress", "flying buttress"),
        ("rose_window(gothic)", "gothic rose window"),
    ],
)
def test_element_name(class_name, words):
    assert element_name(class_name) == words
