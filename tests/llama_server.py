"""llama-cpp-python's OpenAI-compatible server with ggml's extra CPU buffer types turned off.

Same arguments as ``python -m llama_cpp.server``. With extra buffer types on (the library's default,
which its server cannot turn off), ggml repacks the weights for its AMX kernels on Sapphire-Rapids-class
CPUs, and those kernels crash the server intermittently mid-generation (a general protection fault in
libggml-cpu: ggml-org/llama.cpp#20824 and #26954), which failed CI on such a runner. The plain CPU
kernels answer the same prompts; this only changes which of them run.
"""

from __future__ import annotations

import runpy
from typing import Any

import llama_cpp.llama_cpp as lib

_default_params = lib.llama_model_default_params


def _params_without_extra_buffer_types() -> Any:
    params = _default_params()
    params.use_extra_bufts = False
    return params


lib.llama_model_default_params = _params_without_extra_buffer_types

if __name__ == "__main__":
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
