"""Students: mmseg backbone + decode head + 1x1 projection to CLIP's embedding dim (``F: (B, D, H/s, W/s)``)."""

from .model import Student
from .zoo import VARIANTS, build_student, count_params

__all__ = ["VARIANTS", "Student", "build_student", "count_params"]
