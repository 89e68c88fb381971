"""The tiny trial flavour the tests build on (a CPU trains and evaluates it in a second or two)."""

TINY = {
    "model": {"encoder": {"name": "vit-tiny", "resolution": 32}, "connector": {"num_tokens": 4}},
    "train": {"max_steps": 5, "batch_size": 4, "log_every_n_steps": 2, "lr": 1.0e-3},
    "eval": {"shots": [0, 1], "num_examples": 4, "max_new_tokens": 6, "batch_size": 4},
}
