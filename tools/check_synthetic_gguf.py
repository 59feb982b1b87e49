#!/usr/bin/env python3
"""Checks that edgekv and llama.cpp read a GGUF file the same way.

Both run the same prompt ids and then the same greedy steps, each with its own
KV cache; every step's last-token logits are compared (relative L2 error and
argmax). With gguf-py importable, a NumPy forward pass of the file
(fixture_io.gguf_llama_logits) is a third, independent reading of the prompt.
Written for tools/gen_synthetic_llama.py's random files, where a wrong block
layout or tensor orientation on either side shows as a large error.

  PYTHONPATH=.edgekv-cache/pypi-llamacpp:.edgekv-cache/pypi-tools \
    python3 tools/check_synthetic_gguf.py --lib build/cpu/sdk/libedgekv.so --model F.gguf
Exit status 1 when a step's relative error exceeds --tol.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Edgekv:
    """ekv_model_load / ekv_cache_create / ekv_forward through ctypes (default params)."""

    def __init__(self, lib_path: str, model_path: str):
        lib = ctypes.CDLL(lib_path)
        lib.ekv_last_error.restype = ctypes.c_char_p
        lib.ekv_model_load.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.ekv_cache_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.ekv_forward.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_int32,
                                    ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
        lib.ekv_model_free.argtypes = lib.ekv_cache_free.argtypes = [ctypes.c_void_p]
        self.lib, self.model, self.cache = lib, ctypes.c_void_p(), ctypes.c_void_p()
        self._check(lib.ekv_model_load(model_path.encode(), None, ctypes.byref(self.model)), "load")
        self._check(lib.ekv_cache_create(self.model, None, ctypes.byref(self.cache)), "cache")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"edgekv {what}: {self.lib.ekv_last_error().decode()}")

    def forward(self, ids, n_vocab: int) -> np.ndarray:
        arr = (ctypes.c_int32 * len(ids))(*ids)
        out = np.zeros(n_vocab, dtype=np.float32)
        self._check(self.lib.ekv_forward(self.model, self.cache, arr, len(ids), None, 0,
                                         out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n_vocab), "forward")
        return out

    def close(self) -> None:
        self.lib.ekv_cache_free(self.cache)
        self.lib.ekv_model_free(self.model)


class LlamaCpp:
    """The same through llama-cpp-python's low-level API (f16 KV, one thread)."""

    def __init__(self, model_path: str, n_ctx: int):
        import llama_cpp as lc

        self.lc = lc
        # Quiet: llama.cpp logs every tensor it loads.
        self._quiet = lc.llama_log_callback(lambda level, text, user_data: None)
        lc.llama_log_set(self._quiet, ctypes.c_void_p(0))
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(model_path.encode(), lc.llama_model_default_params())
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {model_path}")
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = n_ctx
        cp.n_threads = cp.n_threads_batch = 1
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")

    def forward(self, ids) -> np.ndarray:
        lc = self.lc
        arr = (lc.llama_token * len(ids))(*ids)
        rc = lc.llama_decode(self.ctx, lc.llama_batch_get_one(arr, len(ids)))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return np.ctypeslib.as_array(lc.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        self.lc.llama_free(self.ctx)
        self.lc.llama_model_free(self.model)


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libedgekv.so")
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-prompt", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tol", type=float, default=0.05,
                    help="largest relative L2 logit error allowed (llama.cpp quantizes activations to 8 bits)")
    a = ap.parse_args()

    llama = LlamaCpp(a.model, a.n_prompt + a.steps + 8)
    n_vocab = llama.n_vocab
    ekv = Edgekv(a.lib, a.model)
    # Ids spread over the vocabulary, past the byte tokens (as edgekv bench's).
    prompt = [1] + [259 + (i * 7919 + 13) % (n_vocab - 259) for i in range(a.n_prompt - 1)]
    worst, same = 0.0, 0
    try:
        ids = prompt
        for step in range(a.steps + 1):
            le, ll = ekv.forward(ids, n_vocab), llama.forward(ids)
            if not (np.isfinite(le).all() and np.isfinite(ll).all()):
                raise RuntimeError(f"step {step}: non-finite logits")
            err = rel_err(le, ll)
            worst = max(worst, err)
            top2 = np.sort(ll)[-2:]
            te, tl = int(le.argmax()), int(ll.argmax())
            same += te == tl
            print(f"step {step}: rel err {err:.2e}, argmax edgekv {te} llama.cpp {tl}, "
                  f"llama.cpp margin {top2[1] - top2[0]:.3f}, logit std {ll.std():.3f}")
            if step == 0:
                first = (le, ll)
            ids = [tl]  # both continue with llama.cpp's choice, so the caches stay equal
    finally:
        ekv.close()
        llama.close()
    try:
        import fixture_io

        ref = fixture_io.gguf_llama_logits(a.model, prompt)[-1]
        print(f"numpy (gguf-py) reference, prompt's last token: edgekv rel err {rel_err(first[0], ref):.2e}, "
              f"llama.cpp {rel_err(first[1], ref):.2e}")
    except ImportError:
        print("gguf-py not importable: no NumPy reference")
    print(f"{a.model}: worst rel err {worst:.2e} (tol {a.tol}), argmax equal {same}/{a.steps + 1}")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
