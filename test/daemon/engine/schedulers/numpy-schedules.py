"""Regenerates numpy-schedules.json: the numpy/float32 parts of diffusers 0.27.2's set_timesteps,
re-implemented with numpy alone (no torch needed), for spacings and step counts schedules.json
does not cover. alphas_cumprod comes from shared/fixtures/schedules.json (torch's float32 values).

    python3 test/daemon/engine/schedulers/numpy-schedules.py   (from the project root)
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get("UNDERPAINT_FIXTURES", os.path.join(HERE, "../../../../../shared/fixtures"))
ac = np.array(json.load(open(os.path.join(FIXTURES, "schedules.json")))["alphas_cumprod"], dtype=np.float32)
T = 1000
OFFSET = 1
sig = ((1 - ac) / ac) ** 0.5  # float32, as torch computes it
log_sigmas = np.log(sig)


def sigma_to_t(sigma):
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    return ((1 - w) * low_idx + w * high_idx).reshape(sigma.shape)


out = {}
for n in [1, 2, 3, 7, 10, 13, 33, 64, 100]:
    for sp in ["linspace", "leading", "trailing"]:
        if sp == "linspace":
            t = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
        elif sp == "leading":
            t = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + OFFSET
        else:
            t = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
        out[f"ddim/{sp}/{n}"] = {"timesteps": t.tolist()}

        if sp == "linspace":
            b = np.linspace(0, T - 1, n).round().astype(np.int64)
        elif sp == "leading":
            b = (np.arange(0, n) * (T // n)).round() + OFFSET
        else:
            b = np.round(np.arange(T, 0, -T / n))[::-1].astype(np.int64) - 1
        plms = np.concatenate([b[:-1], b[-2:-1], b[-1:]])[::-1]
        out[f"pndm/{sp}/{n}"] = {"timesteps": plms.astype(np.int64).tolist()}

        if sp == "linspace":
            t = np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
        elif sp == "leading":
            t = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.float32) + OFFSET
        else:
            t = np.arange(T, 0, -T / n).round().astype(np.float32) - 1
        s = np.concatenate([np.interp(t, np.arange(0, len(sig)), sig), [0.0]]).astype(np.float32)
        out[f"euler/{sp}/{n}"] = {"timesteps": t.astype(float).tolist(), "sigmas": s.astype(float).tolist()}

        if sp == "linspace":
            t = np.linspace(0, T - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif sp == "leading":
            t = (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1].astype(np.int64) + OFFSET
        else:
            t = np.arange(T, 0, -T / n).round().astype(np.int64) - 1
        s = np.concatenate([np.interp(t, np.arange(0, len(sig)), sig), [0]]).astype(np.float32)
        out[f"dpmpp_2m/{sp}/{n}"] = {"timesteps": t.tolist(), "sigmas": s.astype(float).tolist()}

    # Karras ignores the spacing
    smin, smax, rho = float(sig[0]), float(sig[-1]), 7.0
    ks = (smax ** (1 / rho) + np.linspace(0, 1, n) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    kt = np.array([sigma_to_t(x) for x in ks]).round()
    out[f"dpmpp_2m_karras/linspace/{n}"] = {
        "timesteps": kt.tolist(),
        "sigmas": np.concatenate([ks, [0]]).astype(np.float32).astype(float).tolist(),
    }

with open(os.path.join(HERE, "numpy-schedules.json"), "w") as fh:
    json.dump({"generated_by": "numpy-schedules.py", "numpy": np.__version__, "steps_offset": OFFSET, "schedules": out}, fh, separators=(",", ":"))
print(len(out), "schedules")
