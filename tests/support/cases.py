"""Shared cases of the layer tests: the spec grid, inputs with padding patterns, and layers
with random weights.

Sizes are distinct everywhere (B=3, T=7, D=5; cross: Tq=4, Tk=6, Dv=3) so swapped axes fail.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

from attnkit import AttentionLayer
from support.compare import numpy

B, T, D = 3, 7, 5  # self-attention x (B, T, D)
TQ, TK, DV = 4, 6, 3  # [query (B, TQ, D), value (B, TK, DV), key (B, TK, D)]

SCORERS = {
    "dot": "dot",
    "dot_sqrt": "dot(scale=sqrt)",
    "dot_learned": "dot(scale=learned)",
    "dot_0.5": "dot(scale=0.5)",
    "general": "general",
    "general_bias": "general(use_bias=true)",
    "additive": "additive",
    "additive_u8": "additive(units=8)",
    "additive_nobias": "additive(use_additive_bias=false, use_attention_bias=false)",
    "concat": "concat",
    "concat_noscale": "concat(use_scale=false)",
    "bahdanau": "bahdanau",
    "gaussian": "gaussian",
    "gaussian_fixed": "gaussian(sigma=1.5)",
}
MASKS = {
    "none": "",
    "local4": "+local4",
    "local5": "+local5",
    "causal": "+causal",
    "causal3": "+causal3",
    "local5+causal": "+local5+causal",
}
POOLINGS = {"seq": "seq", "last": "last", "last_u6": "last(units=6)", "weighted": "weighted"}


def spec_of(scorer: str, mask: str = "none", pooling: str = "seq") -> str:
    return SCORERS[scorer] + MASKS[mask] + "+" + POOLINGS[pooling]


# -- inputs -------------------------------------------------------------------------------------
def lengths_mask(lengths, steps) -> np.ndarray:
    """(B, steps) booleans, True for the first ``lengths[b]`` steps (padding at the end)."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def self_inputs(seed: int = 0, dtype="float32") -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (B, T, D)).astype(dtype)


def cross_inputs(seed: int = 0, dtype="float32") -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.uniform(-1, 1, (B, TQ, D)).astype(dtype),
        rng.uniform(-1, 1, (B, TK, DV)).astype(dtype),
        rng.uniform(-1, 1, (B, TK, D)).astype(dtype),
    ]


#: label -> mask argument. Sample lengths: some full, some padded at the end, one fully padded.
SELF_PADDINGS = {
    "unpadded": None,
    "pad[7,4,0]": lengths_mask([7, 4, 0], T),
    "pad[1,6,3]": lengths_mask([1, 6, 3], T),
}
CROSS_PADDINGS = {
    "unpadded": None,
    # query and value padded; the last sample fully padded on both sides
    "q[3,2,0]v[6,4,0]": [lengths_mask([3, 2, 0], TQ), lengths_mask([6, 4, 0], TK)],
    # valid queries whose keys are all padded (sample 1): rows with nothing visible
    "q[4,4,2]v[5,0,6]": [lengths_mask([4, 4, 2], TQ), lengths_mask([5, 0, 6], TK)],
    # separate value and key masks: the keys seen are their AND
    "q[4,1,3]v[6,5,2]k[3,6,6]": [
        lengths_mask([4, 1, 3], TQ),
        lengths_mask([6, 5, 2], TK),
        lengths_mask([3, 6, 6], TK),
    ],
}


def inputs_for(mode: str, seed: int = 0, dtype="float32"):
    return self_inputs(seed, dtype) if mode == "self" else cross_inputs(seed, dtype)


def paddings_for(mode: str) -> dict:
    return SELF_PADDINGS if mode == "self" else CROSS_PADDINGS


def randomize(layer, seed: int = 1) -> None:
    """Give every weight a random value (biases included, so they matter in the comparison)."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        name = v.path.rsplit("/", 1)[-1]
        if name == "scorer_scale":
            value = rng.uniform(0.5, 1.5, v.shape)
        elif name == "scorer_rho":  # sigma = softplus(rho) in [0.69, 1.31]
            value = rng.uniform(0.0, 1.0, v.shape)
        else:
            value = rng.uniform(-0.8, 0.8, v.shape)
        v.assign(value.astype(v.dtype))


def make_layer(spec: str, inputs, seed: int = 1, **kwargs) -> AttentionLayer:
    layer = AttentionLayer(spec, return_attention=True, **kwargs)
    layer(inputs)  # build
    randomize(layer, seed)
    return layer


def run(layer, inputs, mask=None):
    out, weights = layer(inputs, mask=mask)
    return numpy(out), numpy(weights)


@contextlib.contextmanager
def no_warnings():
    """Fail on any warning inside the block except the DeprecationWarnings the backends raise
    about their own internals (pyproject ignores those too): the block runs with every warning
    shown, whatever the filters outside say."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    noise = ("/tensorflow/", "/keras/", "/torch/", "/jax/", "/jaxlib/", "/google/")
    ours = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not (
            issubclass(w.category, DeprecationWarning)
            and any(part in w.filename.replace("\\", "/") for part in noise)
        )
    ]
    assert not ours, "unexpected warnings: " + "; ".join(ours)
