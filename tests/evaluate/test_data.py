"""Data sources of the evaluation: ILSVRC-layout folders and the cluttered test split."""
import numpy as np
import pytest

from minicnn.evaluate import data
from minicnn.evaluate.data import BoxFolder, ClutteredTest, ItemError, parse_annotation

from conftest import SYNSETS, add_bad_items, make_box_folder, voc_xml


def test_folder_finds_images_labels_and_boxes(tmp_path):
    root, synsets, expected = make_box_folder(tmp_path)
    src = BoxFolder(root, synsets)
    assert sorted(src.key(i) for i in range(len(src))) == sorted(expected)
    for i in range(len(src)):
        item = src.item(i)
        label, truth = expected[item.key]
        assert item.label == label
        assert item.true_boxes == truth
        assert item.image.dtype == np.uint8 and item.image.shape[2] == 3
        assert item.mask is None
    wide = src.item([src.key(i) for i in range(len(src))].index("extra/ILSVRC2012_val_00000001.png"))
    assert wide.size == (96, 80)
    assert src.class_names()[0] == "T-shirt/top"           # description up to the comma


def test_annotation_origin_and_clipping(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(voc_xml((50, 40), [("n1", [0, 0, 10, 20])], origin=1))
    size, objects = parse_annotation(path, origin=1)
    assert size == (50, 40) and objects == [("n1", [0, 0, 10, 20])]
    size, objects = parse_annotation(path, origin=0)         # the same numbers read 0-based
    assert objects == [("n1", [1, 1, 11, 21])]


@pytest.mark.parametrize("text, why", [
    ("<annotation><object><name>n1</name></object></annotation>", "bndbox"),
    ("<annotation><object><name>n1</name><bndbox><xmin>a</xmin><ymin>0</ymin><xmax>1</xmax>"
     "<ymax>1</ymax></bndbox></object></annotation>", "not a number"),
    ("<annotation><object><name>n1</name><bndbox><xmin>5</xmin><ymin>0</ymin><xmax>1</xmax>"
     "<ymax>1</ymax></bndbox></object></annotation>", "xmax < xmin"),
    ("<notes/>", "<annotation> root"),
    ("<annotation>", "not a readable XML"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
     "<annotation>&e;</annotation>", "not a readable XML"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
     "<annotation>&b;</annotation>", "not a readable XML"),
])
def test_bad_annotations_are_one_line_item_errors(tmp_path, text, why):
    path = tmp_path / "x.xml"
    path.write_text(text)
    with pytest.raises(ItemError, match=why) as err:
        parse_annotation(path)
    assert "\n" not in str(err.value)


def test_unusable_items_raise_item_errors(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=2)
    bad = add_bad_items(root)
    src = BoxFolder(root, synsets)
    keys = [src.key(i) for i in range(len(src))]
    for key, why in zip(bad, ["corrupt or truncated", "no XML annotation",
                              "not a readable XML"]):
        with pytest.raises(ItemError, match=why):
            src.item(keys.index(key))


def test_item_whose_objects_are_all_unknown(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    xml = next(tmp_path.glob("**/Annotations/**/*.xml"))
    xml.write_text(voc_xml((64, 64), [("n77777777", [1, 1, 9, 9])]))
    with pytest.raises(ItemError, match="no object of a class in the synsets"):
        BoxFolder(root, synsets).item(0)


def test_size_mismatch_between_annotation_and_image(tmp_path):
    root, synsets, _ = make_box_folder(tmp_path, count=1)
    xml = next(tmp_path.glob("**/Annotations/**/*.xml"))
    xml.write_text(voc_xml((65, 64), [(SYNSETS[0], [1, 1, 9, 9])]))
    with pytest.raises(ItemError, match="annotation says 65x64 but the image is 64x64"):
        BoxFolder(root, synsets).item(0)


def test_synsets_file_errors(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("n1 a\n\nn2 b\n")
    with pytest.raises(ValueError, match="line 2 is empty"):
        data.read_synsets(p)
    p.write_text("n1 a\nn1 b\n")
    with pytest.raises(ValueError, match="listed twice"):
        data.read_synsets(p)
    p.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not a UTF-8"):
        data.read_synsets(p)
    with pytest.raises(ValueError, match="needs --synsets"):
        data.open_source(str(tmp_path))
    p.write_text("n1 a\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no JPEG or PNG"):
        BoxFolder(tmp_path / "empty", p)


def test_cluttered_test_items_match_the_canvas_generator(fashion_dir):
    from minicnn.datasets.cluttered import evaluation_split
    from minicnn.datasets.fashion_mnist import load_fashion_mnist
    src = ClutteredTest(fashion_dir)
    assert len(src) == 6
    images, labels = load_fashion_mnist("test", str(fashion_dir))
    canvases, split_labels, boxes = evaluation_split(images, labels)
    for i in range(6):
        item = src.item(i)
        assert item.key == f"canvas_{i:05d}.png"
        np.testing.assert_array_equal(item.image, canvases[i])
        assert item.label == split_labels[i] and item.true_boxes == [list(boxes[i])]
        ys, xs = np.nonzero(item.mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == list(boxes[i])


def test_cluttered_test_without_the_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        ClutteredTest(tmp_path)
