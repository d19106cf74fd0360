"""What each channel detects: its top examples among the shipped digits (``app.services.top_examples``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.models import ReceptiveFieldInfo


class ExampleBox(BaseModel):
    """Where the unit at the example's strongest position looks in the digit: rows and columns, inclusive."""

    start: list[int] = Field(..., description="[row, column] of the receptive field's first pixel (negative: in the "
                                              "padding, outside the image)", examples=[[-2, 5]])
    end: list[int] = Field(..., description="[row, column] of its last pixel (27 or more: past the image's edge)",
                           examples=[[2, 9]])
    clipped_start: list[int] = Field(..., description="start clipped to the image: the crop's first pixel",
                                     examples=[[0, 5]])
    clipped_end: list[int] = Field(..., description="end clipped to the image: the crop's last pixel",
                                   examples=[[2, 9]])
    clipped: bool = Field(..., description="the receptive field reaches past the image's edge (into the padding), so "
                                           "the crop is smaller than it", examples=[True])
    whole: bool = Field(..., description="the unit sees the whole digit (a fully connected or pooled layer): the crop "
                                         "is the whole image", examples=[False])


class TopExample(BaseModel):
    """One of the digits that activate the channel most."""

    rank: int = Field(..., description="1 for the digit that activates the channel most", examples=[1])
    index: int = Field(..., description="the digit's index among the 10,000 shipped digits (0-7,999 the training "
                                        "split, 8,000-9,999 the test split)", examples=[4127])
    split: str = Field(..., description="'train' or 'test'", examples=["train"])
    label: int = Field(..., description="the digit it shows (its MNIST label)", examples=[7])
    value: float = Field(..., description="the channel's largest value over its positions for this digit (the "
                                          "score it is ranked by)", examples=[6.4821])
    position: list[int] = Field(..., description="[row, column] of that value in the channel's map (empty for a "
                                                 "layer without positions)", examples=[[0, 5]])
    box: ExampleBox = Field(..., description="the input pixels the unit at that position reads")
    crop_url: str = Field(..., description="GET: the crop (the box clipped to the image) as a PNG, upscaled 4×",
                          examples=["/api/digits/4127.png?crop=0,5,2,9&scale=4"])
    digit_url: str = Field(..., description="GET: the whole digit with the box drawn on it, as a PNG, upscaled 4×",
                           examples=["/api/digits/4127.png?box=0,5,2,9&scale=4"])


class ChannelExamples(BaseModel):
    """One channel and its top examples, best first."""

    channel: int = Field(..., description="the channel's index in the node's output", examples=[3])
    examples: list[TopExample] = Field(..., description="the k digits with the highest score, best first; equal "
                                                        "scores go to the lower index")
    tied: bool = Field(False, description="every one of the k examples has the same value, so their order says "
                                          "nothing about the channel (they are in index order); a value of 0 after a "
                                          "ReLU means the channel does not fire on any of the 10,000 digits",
                       examples=[False])


class TopExamplesBase(BaseModel):
    """What every top-examples answer says about how they were found."""

    model_id: str = Field(..., description="the model", examples=["digits_classic"])
    node: str = Field(..., description="the node (layer)", examples=["conv2"])
    output_shape: list[int] = Field(..., description="the node's output per digit: (C, H, W), or (F,) for a layer "
                                                     "without positions", examples=[[16, 10, 10]])
    k: int = Field(..., description="examples per channel", examples=[9])
    dataset: str = Field(..., description="where the examples come from",
                         examples=["the 10,000 shipped MNIST digits (8,000 training, 2,000 test)"])
    score: str = Field(..., description="what the digits are ranked by",
                       examples=["the channel's largest value over its positions in the digit"])
    receptive_field: ReceptiveFieldInfo = Field(..., description="the node's receptive field (r, S, P per axis)")
    note: str = Field("", description="anything to know about the boxes (a unit that sees the whole digit; no "
                                      "receptive field)", examples=[""])
    job_id: str = Field(..., description="the analysis job that computed the model's top examples (its result links "
                                         "the raw arrays as .npy)", examples=["5d41402abc4b2a76"])


class ChannelTopExamples(TopExamplesBase, ChannelExamples):
    """The digits that activate one channel most, each cropped to the unit's receptive field."""


class LayerTopExamples(TopExamplesBase):
    """Every channel of a layer with its top examples: the atlas's grid in one request."""

    channels: list[ChannelExamples] = Field(..., description="every channel of the node, in order")


class ChannelLayer(BaseModel):
    """A node whose channels have top examples."""

    node: str = Field(..., description="the node's id", examples=["conv2"])
    op: str = Field(..., description="its op", examples=["conv2d"])
    output_shape: list[int] = Field(..., description="(C, H, W), or (F,) without positions", examples=[[16, 10, 10]])
    channels: int = Field(..., description="its number of channels (C, or F)", examples=[16])


class TopExamplesModel(BaseModel):
    """A model whose channels have top examples, and its layers that have channels."""

    id: str = Field(..., description="the model's id", examples=["digits_classic"])
    name: str = Field(..., description="its display name", examples=["Classic digit CNN (LeNet style)"])
    layers: list[ChannelLayer] = Field(..., description="its nodes with channels, in graph order (flatten and reshape "
                                                        "nodes only rearrange: left out)")


class TopExamplesModels(BaseModel):
    """The models you may use that take the shipped digits as images (the others answer 422)."""

    models: list[TopExamplesModel] = Field(..., description="digits_classic, digits_resnet, and the convolutional "
                                                            "networks trained in the lab that you may see")
