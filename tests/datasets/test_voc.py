"""Tests of the shared VOC XML parser in torchgeo_ext.datasets.voc."""

from pathlib import Path

import pytest
import torch

from torchgeo_ext.datasets.detection import AnnotationCounts
from torchgeo_ext.datasets.voc import parse_voc
from torchgeo_ext.errors import InvalidInputError, MissingInputError

XML = """<annotation>
  <size><width>100</width><height>80</height><depth>1</depth></size>
  <object><name> ship </name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>11</xmax><ymax>12</ymax></bndbox>
  </object>
  <object><name>ship</name>
    <rotated_bndbox><rotated_bbox_cx>20</rotated_bbox_cx>
      <x1>10</x1><y1>20</y1><x2>30</x2><y2>10</y2><x3>34</x3><y3>18</y3><x4>14</x4><y4>28</y4>
    </rotated_bndbox>
  </object>
  <object><name>car</name><pose>Unspecified</pose></object>
  <object><name>car</name><bndbox><xmin>1</xmin><ymin>2</ymin></bndbox></object>
</annotation>
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / 'a.xml'
    path.write_text(text)
    return str(path)


def test_parse(tmp_path: Path) -> None:
    path = write(tmp_path, XML)
    skipped: AnnotationCounts = {}
    out = parse_voc(path, skipped)
    assert out.names == ['ship', 'ship']
    assert out.size == (100, 80)
    assert out.difficult.tolist() == [True, False]
    assert out.rotated.tolist() == [False, True]
    assert out.xyxy.dtype == torch.float32
    # a <bndbox>: its corners are the rectangle; rotated corners: their envelope
    assert out.xyxy.tolist() == [[1, 2, 11, 12], [10, 10, 34, 28]]
    assert out.corners[0].tolist() == [1, 2, 11, 2, 11, 12, 1, 12]
    assert out.corners[1].tolist() == [10, 20, 30, 10, 34, 18, 14, 28]
    assert skipped == {path: {'no_geometry': 1, 'incomplete_geometry': 1}}


def test_no_objects(tmp_path: Path) -> None:
    out = parse_voc(write(tmp_path, '<annotation><filename>x</filename></annotation>'))
    assert out.names == []
    assert out.xyxy.shape == (0, 4)
    assert out.corners.shape == (0, 8)
    assert out.size is None


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r'b.xml: annotation file does not'):
        parse_voc(str(tmp_path / 'b.xml'))
    path = write(tmp_path, '<annotation><object>')
    with pytest.raises(InvalidInputError, match=r'a.xml: malformed XML'):
        parse_voc(path)
    bad = XML.replace('<xmax>11</xmax>', '<xmax>eleven</xmax>')
    with pytest.raises(InvalidInputError, match=r'a.xml: object 1: non-numeric'):
        parse_voc(write(tmp_path, bad))
    bad = XML.replace('<width>100</width>', '<width>wide</width>')
    with pytest.raises(InvalidInputError, match=r'a.xml: non-numeric <size>'):
        parse_voc(write(tmp_path, bad))
