"""What one c2s serve application is built from: the run, the replicas, batching and the input limits.

One typed object, validated once (pydantic: a wrong type, a value out of range or an unknown key is refused
naming the key). ``c2s serve`` builds it from its options; ``serve deploy`` from the ``args`` of the
application in a Serve config file (Ray's "Pass Arguments to Applications" guide, typed builders:
ray/serve/_private/api.py, ``call_user_app_builder_with_args_if_necessary``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class ServeSettings(BaseModel):
    """One field per knob; each field's description is the option's help (``c2s serve --help``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str = Field(description="run directory (its newest intact checkpoint) or checkpoint directory, as the "
                                 "replicas see it (on a cluster: the shared run volume)")
    overrides: list[str] = Field(default_factory=list,
                                 description="KEY=VALUE overrides of the run's config, e.g. "
                                             "teacher.checkpoint=/shared/weights/ViT-B-16.pt")
    replicas: int = Field(1, ge=1, description="replicas of the segmenter (each holds the student + text tower)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per replica (also its torch threads, at least 1)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (a fraction shares one GPU; > 0 runs on cuda)")
    max_batch_size: int = Field(8, ge=1, description="images per forward pass; 1 turns batching off")
    # 0.05, not 0.01: at 8 clients on 2 cores, 0.01 gave 1.19x the unbatched images/s and 0.05 1.67x
    # (docs/serve.md); a lone request does not wait (c2s.serve.engine.BatchCap)
    batch_wait_s: float = Field(0.05, ge=0, description="longest wait of a batch for the requests in flight (s)")
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="requests a replica holds at once (default: max(2 x max_batch_size, 8))")
    max_bytes: int = Field(16 * MIB, ge=1024, description="largest request body (bytes; base64 JSON counts "
                                                          "its encoded size)")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest image (width x height pixels)")
    max_scores: int = Field(2**28, ge=1, description="largest pixels x classes of one image: its class-score "
                                                     "map at full size (2**28 float32 = 1 GiB)")
    max_classes: int = Field(256, ge=1, le=256, description="most class names in one request (a palette PNG "
                                                            "holds 256)")
    max_name_chars: int = Field(80, ge=1, description="longest class name (characters)")
    min_side: int = Field(32, ge=1, description="shortest image side after resizing to the run's "
                                                "data.eval_scale (the student's stride-32 stages need 32)")

    @property
    def ongoing_requests(self) -> int:
        return self.max_ongoing_requests or max(2 * self.max_batch_size, 8)

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1


class ServeError(RuntimeError):
    """c2s serve cannot start: the message names the option or what failed (c2s prints it alone, exit 2)."""
