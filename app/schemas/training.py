"""The training lab: a job's settings (each toggle one of the lecture's training tips), its state and its events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

#: field -> (lowest, highest) allowed; the error message quotes the range
RANGES: dict[str, tuple[float, float]] = {
    "depth": (1, 8),
    "num_layers": (1, 3),
    "dropout_p": (0.05, 0.9),
    "weight_decay": (1e-6, 0.1),
    "lr": (1e-5, 1.0),
    "batch_size": (4, 512),
    "epochs": (1, 20),
    "train_size": (100, 8000),
    "test_size": (100, 2000),
    "seed": (0, 2**31 - 1),
}


#: the networks that read a digit row by row (``engine.models.sequence_digits``)
RECURRENT = ("lstm", "gru_attention")


def _bounds(name: str) -> dict:
    low, high = RANGES[name]
    return {"json_schema_extra": {"minimum": low, "maximum": high}}


class TrainingSettings(BaseModel):
    """What to train and how. Bad values give 422 naming the field and its allowed range."""

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [
        {"name": "deep, skips and batch norm", "network": "deep", "depth": 4, "batch_norm": True,
         "skip_connections": True, "optimizer": "sgd", "lr": 0.05, "batch_size": 64, "epochs": 3, "seed": 0},
    ]}}

    name: str | None = Field(None, max_length=60, description="a label for the job (default: from the settings)",
                             examples=["plain, no batch norm"])
    network: Literal["classic", "deep", "lstm", "gru_attention"] = Field(
        "classic", description="'classic': the LeNet-style digit CNN (2 convolutions; pre-trained weights exist); "
                               "'deep': a CNN of 2 × depth + 2 convolutions 3x3, where skip connections matter; "
                               "'lstm': a recurrent network, an LSTM reading the digit row by row; "
                               "'gru_attention': a GRU reading the rows, with attention over them (the recurrent "
                               "ones have pre-trained weights too)")
    depth: int = Field(4, description="deep network only: blocks of two convolutions, 1 to 8", **_bounds("depth"))
    num_layers: int = Field(1, description="recurrent networks only ('lstm', 'gru_attention'): stacked recurrent "
                                           "layers, 1 to 3 (with dropout on, it also drops between them)",
                            **_bounds("num_layers"))
    batch_norm: bool = Field(False, description="CNNs only: batch normalisation after every convolution (tip: "
                                                "batch norm)")
    skip_connections: bool = Field(False, description="deep network only: add each block's input to its output, "
                                                      "as in ResNet (tip: skip connections)")
    dropout: bool = Field(False, description="dropout before the classifier, and between stacked recurrent layers "
                                             "(tip: regularisation)")
    dropout_p: float = Field(0.3, description="probability of zeroing a feature when dropout is on, 0.05 to 0.9",
                             **_bounds("dropout_p"))
    l2: bool = Field(False, description="L2 weight decay on the weight matrices: convolutions, linear layers, the "
                                        "recurrent layers' and the attention's (tip: regularisation)")
    weight_decay: float = Field(5e-4, description="L2 strength when l2 is on (PyTorch's weight_decay), 1e-6 to 0.1",
                                **_bounds("weight_decay"))
    pretrained: bool = Field(False, description="start from the shipped pre-trained weights and fine-tune "
                                                "('classic', 'lstm', 'gru_attention'; not 'deep') instead of from "
                                                "scratch (tip: pre-training)")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="'sgd': SGD with momentum 0.9; 'adam': Adam "
                                                                 "(betas 0.9, 0.999)")
    lr: float = Field(0.01, description="learning rate, 1e-5 to 1 (try 0.01 to 0.05 for SGD, 0.001 for Adam)",
                      **_bounds("lr"))
    batch_size: int = Field(64, description="digits per step, 4 to 512", **_bounds("batch_size"))
    epochs: int = Field(3, description="passes over the training digits, 1 to 20", **_bounds("epochs"))
    train_size: int = Field(2000, description="training digits used (of the 8,000 shipped), 100 to 8000",
                            **_bounds("train_size"))
    test_size: int = Field(1000, description="test digits evaluated after every epoch (of the 2,000), 100 to 2000",
                           **_bounds("test_size"))
    seed: int = Field(0, description="initialisation, shuffling and dropout: the same seed gives the same run",
                      **_bounds("seed"))

    @field_validator(*RANGES)
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        low, high = RANGES[info.field_name]
        if not low <= value <= high:
            raise ValueError(f"{info.field_name} must be from {low:g} to {high:g}, got {value:g}")
        return value

    @model_validator(mode="after")
    def _toggles_that_apply(self) -> TrainingSettings:
        if self.network != "deep" and self.skip_connections:
            raise ValueError(f"skip_connections needs network 'deep': the {self.network} network "
                             + ("has only two convolutions, too shallow for skip connections to matter"
                                if self.network == "classic" else "is recurrent, it has no blocks of convolutions"))
        if self.network == "deep" and self.pretrained:
            raise ValueError("pretrained needs network 'classic', 'lstm' or 'gru_attention': no pre-trained weights "
                             "are shipped for the deep network; train it from scratch")
        if self.network in RECURRENT and self.batch_norm:
            raise ValueError(f"batch_norm needs a CNN ('classic' or 'deep'): the {self.network} network is "
                             "recurrent and has no convolutions to normalise; try dropout or L2 instead")
        return self


class EpochPoint(BaseModel):
    """Loss and accuracy after an epoch; epoch 0 is the network before training (both in inference mode)."""

    epoch: int = Field(..., description="0 before training, then 1, 2, ... after each epoch", examples=[1])
    loss: float | None = Field(None, examples=[0.35],
                               description="training loss: mean over the epoch's batches (training mode)")
    accuracy: float | None = Field(None, examples=[0.9], description="training accuracy, fraction correct")
    test_loss: float | None = Field(None,
                                    description="mean cross-entropy loss on the test digits (inference mode); null if "
                                                "not finite (the training diverged)",
                                    examples=[0.18])
    test_accuracy: float | None = Field(None,
                                        description="fraction of the test digits classified correctly, in [0, 1]",
                                        examples=[0.947])
    elapsed: float = Field(..., examples=[12.4], description="seconds since the job started training")


class BatchPoint(BaseModel):
    """The running training loss and accuracy within an epoch, after a batch."""

    step: int = Field(..., examples=[16], description="batches done since the start")
    x: float = Field(..., examples=[0.5], description="position in epochs (epoch - 1 + batch / batches), for plotting")
    loss: float = Field(...,
                        description="running mean cross-entropy loss over the epoch's batches so far (training mode)",
                        examples=[0.41])
    accuracy: float = Field(...,
                            description="running fraction of the epoch's training digits classified correctly so far, "
                                        "in [0, 1]",
                            examples=[0.87])


class JobProgress(BaseModel):
    """Where a job is."""

    epoch: int = Field(0, description="the current epoch, 1-based (0 before the first batch)", examples=[2])
    epochs: int = Field(..., description="epochs the job runs in all (its settings' epochs)", examples=[3])
    step: int = Field(0, description="batches done since the start", examples=[40])
    steps: int = Field(..., examples=[96], description="batches in the whole run")
    elapsed: float = Field(0.0, examples=[12.4], description="seconds spent training")
    eta: float | None = Field(None, examples=[17.4], description="estimated seconds left (null until a batch is timed)")


JobStatus = Literal["running", "done", "cancelled", "failed"]


class TrainingJob(BaseModel):
    """A training job: its settings, status, progress and curves."""

    id: str = Field(..., description="the job's id (8 hex digits), for /api/training/jobs/{id}", examples=["a1b2c3d4"])
    name: str = Field(..., examples=["classic, SGD lr 0.01"],
                      description="its label: the settings' name, or one made from the settings")
    status: JobStatus = Field(..., examples=["running"], description="'running', 'done', 'cancelled' or 'failed'")
    settings: TrainingSettings = Field(..., description="the settings it was started with")
    network: str = Field(..., description="the network trained, in words",
                         examples=["classic LeNet-style network: conv 5x5 (8), pool, conv 5x5 (16), pool, fully "
                                   "connected (10)"])
    param_count: int = Field(..., description="trainable parameters of the network", examples=[7434])
    pretrained_params: list[str] = Field(default_factory=list, examples=[[]],
                                         description="parameters copied from the shipped weights (fine-tuning)")
    created_at: str = Field(..., description="when the job was created, UTC, ISO 8601",
                            examples=["2026-11-26T06:25:10Z"])
    progress: JobProgress = Field(..., description="where the job is: epoch, step, time spent and left")
    epochs: list[EpochPoint] = Field(default_factory=list, description="epoch 0 (before training), 1, 2, ...")
    batches: list[BatchPoint] = Field(default_factory=list, description="running training curve (thinned)")
    error: str | None = Field(None, examples=[None],
                              description="why the job failed ('interrupted: ...' when the server process training "
                                          "it stopped)")
    model_id: str | None = Field(None, examples=["trained-a1b2c3d4"],
                                 description="set once the network is opened as a model (POST .../model)")
    events_url: str = Field(..., examples=["/api/training/jobs/a1b2c3d4/events"],
                            description="server-sent events of this job")
    owned: bool = Field(False, examples=[True],
                        description="yours (you started it): you may stop it and open it as a model")


class TrainingJobCreated(TrainingJob):
    """A job just started, with the owner token that identifies whoever started it."""

    owner_token: str = Field(..., examples=["q3Xh0bW6S8yJf2kVtN4cLm9pR1aZ7uEoD5iGwYx_B-0"],
                             description="your identity: send it as the X-Owner-Token header to stop this job, open it "
                                         "as a model and see it in the list; keep it secret. Browsers keep it in a "
                                         "cookie")


class TrainingJobList(BaseModel):
    """Your jobs kept by the server (every worker's), newest first (the lecturer: everyone's)."""

    jobs: list[TrainingJob] = Field(..., description="your jobs kept by the server (every worker's), newest first "
                                                     "(the lecturer: everyone's)")
    running: int = Field(..., examples=[1], description="jobs training now, everyone's, on every worker")
    max_running: int = Field(..., examples=[2], description="at most this many train at once, on all the "
                                                            "server's workers together; more gives 429")


class TrainedModel(BaseModel):
    """The finished network, registered as a model (stored in the data directory until it is deleted)."""

    model_id: str = Field(..., description="the new model's id, for the /api/models/{model_id} paths",
                          examples=["trained-a1b2c3d4"])
    explorer_url: str = Field(..., examples=["/?model=trained-a1b2c3d4"],
                              description="the explorer page with this model open")
