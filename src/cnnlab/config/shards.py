"""Config pieces of the streamed sources (``data.name: tfrecord | webdataset``, ``cache: none``).

Imported by :mod:`cnnlab.config.schema`; kept apart so the data section stays readable.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field

from cnnlab.config.base import Strict

# A glob, or a list of files/globs; or such a list per part (train/val/test) of the data.
FileList = Union[str, list[str]]
Files = Union[FileList, dict[Literal["train", "val", "test"], FileList]]


class RecordKeys(Strict):
    """Where a record keeps its image, label and class name. Unset keys take the source's
    defaults: tf.train.Example features for tfrecord, member extensions for webdataset."""

    image: str | None = Field(None, description="tfrecord: bytes feature of the encoded image "
                              "(default image/encoded); webdataset: image extensions, `;`-separated "
                              "(default jpg;jpeg;png;webp)")
    label: str | None = Field(None, description="tfrecord: int64 feature of the class index "
                              "(default image/class/label); webdataset: extension of the class "
                              "index (default cls)")
    text: str | None = Field(None, description="class name per record, optional (default "
                             "image/class/text for tfrecord, txt for webdataset); absent names "
                             "become the label numbers")
