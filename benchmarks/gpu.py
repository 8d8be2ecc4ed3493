"""8. GPU: there is none here, or the figures on CUDA."""

from __future__ import annotations


import torch


def bench_gpu(args) -> dict:
    if not torch.cuda.is_available():
        return {"available": False, "note": "no GPU available"}
    return {"available": True, "device": torch.cuda.get_device_name(0),
            "note": "a GPU is present; this script measures the CPU (the laptop case) only"}
