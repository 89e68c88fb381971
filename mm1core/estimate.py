"""A trial's peak memory and training FLOPs, from its config alone (torch-free): what the preflight checks a trial
against before it starts (``mm1core.preflight``).

``estimate_trial(config, vocab_size)`` models the two phases of a trial, each ``persistent + transient``, and
reports the larger as ``peak_bytes`` with the terms of that phase as ``breakdown`` (they sum to it):

- **training**: one optimizer step on the largest batch the data can make;
- **evaluation**: the end-of-trial evaluation (``mm1core.evaluate``), ``eval.batch_size`` prompts at a time.

Shapes (read from the code that makes them): B = ``train.batch_size`` rows of T tokens; T = ``data.seq_len`` when
packing, else the longest document the embedded world writes with I images (``mm1core.data.lengths``:
``max_sample_tokens(I, tokens_per_image)``; the decoder's ``max_seq_len`` for data read from files, as
``PretrainingDataset`` truncates to it); a stage whose data is not the pre-training mixture (SFT) trains on
conversations of one image, ``max_conversation_tokens(tokens_per_image)`` tokens (``mm1core.data.sft`` truncates
to ``data.seq_len`` or ``max_seq_len``). I = ``data.max_images`` images per row when interleaved documents or
packing can put that many in a row, 1 for captions alone, 0 for text alone; each image is
``views = model.views_per_image`` encoder views (``highres.mode: subimage``: 1 + grid^2) of P = (view px / patch)^2
patches (P' = P + 1 with a class token); N = B I views a step. Encoder width w, depth L_e, MLP m, heads h_e;
decoder width d, depth L, MLP f, heads h, head dim e, key/value width g = kv_heads * e, vocabulary V (a decoder
checkpoint's larger table wins); connector tokens k per view, LM width D = d.

Bytes: weights, gradients and AdamW moments are fp32 (Lightning's mixed precision keeps fp32 master weights);
activations take ``a`` bytes per element, 4 with ``train.precision: 32-true``, 2 with ``bf16-mixed`` / ``16-mixed``
(``auto``: bf16-mixed on ``device="gpu"``, fp32 on ``"cpu"``, as ``mm1core.train.resolve_precision``). Under
autocast the norms and the residual stream stay fp32, so ``a = 2`` is a lower bound on those few terms.

Persistent (both phases; after the last step Lightning still holds the optimizer and the gradients):

- ``parameters``  = 4 x (encoder + connector + decoder parameters, those the stage builds),
  ``ModelConfig.parameter_counts``;
- ``gradients``   = 4 x trainable parameters (a component trains unless ``freeze``d or not in the stage);
- ``optimizer_state`` = 8 x trainable parameters (AdamW's two fp32 moments; frozen weights have none);
- ``autocast_weights`` = 2 x parameters under mixed precision (autocast's bf16 copy of every weight a matmul
  uses, cached for the step and kept for backward), else 0;
- ``runtime``: on a CPU, what the trial process adds besides tensors (Lightning's trainer, the data pipeline, the
  kernels' code pages), 32 MiB measured (``CPU_RUNTIME_BYTES``); on a GPU 0 (torch's allocator sees tensors only; the
  CUDA context, a few hundred MiB, is outside this estimate).

Training transient (elements x ``a`` unless said; what autograd keeps for backward, counted per module with
``torch.autograd.graph.saved_tensors_hooks`` in ``tests/mm1core/test_estimate.py``):

- ``inputs``: the batch, 4 x B I 3 R^2 pixels (R the image side), 4 x N 3 r^2 more for sub-image views (r the
  view side), 9 x B T for token ids and loss mask;
- ``encoder_activations`` (0 when the encoder is frozen: nothing upstream needs a gradient) =
  N x (L_e P' (8 w + 2 m + h_e + 4) + P (w + 2) + 3 r^2): per block its two LayerNorms' inputs, outputs and
  statistics, the q/k/v projection, the attention output and log-sum-exp, the MLP's hidden layer before and after
  the activation; the final LayerNorm; the pixels the patch convolution keeps;
- ``connector_activations`` = N x the registry entry's ``activation_elements`` (``mm1core.connectors.costs``),
  when the connector or the encoder trains;
- ``decoder_activations`` = B T x (sum over layers + 3 d + 2 e): a dense layer keeps 8 d + 2 g + 4 f + h per
  token (two RMSNorms' input, normalised and scaled outputs; rotated queries and keys, values, attention output,
  log-sum-exp; SwiGLU's gate, up, SiLU and product), a MoE layer 8 d + 2 g + h + top_k (3 d + 4 f) + 3 E (each of
  top_k experts keeps its gathered input, its SwiGLU and its gated output; capacity dropping only lowers it);
  image tokens are positions like any other; the final norm 3 d, RoPE's cos and sin 2 e;
- ``attention_scores``: 0 with fused attention kernels (``attention_kernel="fused"``: measured, torch 2.13 runs
  ``scaled_dot_product_attention`` as its flash kernel on CPU in training and evaluation alike, and flash /
  memory-efficient kernels on CUDA, none of which materialises the scores); with ``"math"`` the softmax of every
  layer, L B h T^2 + L_e N h_e P'^2;
- ``logits`` = 12 x B T V bytes: the head's logits, the shifted copy and the fp32 log-softmax the loss keeps
  (``mm1core.module.next_token_loss``; 4 + 4 + 4, or 2 + 2 + 4 + 4 with the fp32 cast under autocast);
- ``backward_activations``: the gradients one block's backward holds while its saved tensors are being freed: its
  input's and its MLP hidden layer's, two of each, 2 B T (d + f) or, if larger, 2 N P' (w + m) (measured with the
  profiler's memory timeline: the backward adds little to the saved tensors, which it frees as it goes);
- activation checkpointing (``activation_checkpointing=True``: what wrapping each block would give; the trainer does
  not do it today): a block keeps only its input, B T d per decoder layer and N P' w per encoder block, and one
  block's activations are recomputed at a time (the largest block's saved elements come on top);
- ``optimizer_step``: the step runs once the activations are freed; on a GPU the foreach AdamW makes about two fp32
  temporaries per trainable weight (8 x trainable bytes; on a CPU one weight's at a time, 0 here), and when that is
  more than the activations, the training phase is ``inputs`` + ``optimizer_step``.

Evaluation transient (``torch.inference_mode``: nothing kept for backward; E = ``eval.batch_size`` prompts of
n = k' + 1 images, k' the most shots the stage evaluates (0 without few-shot), of up to T_e tokens:
``max_prompt_tokens(k', tokens_per_image) + eval.max_new_tokens``, at least a held-out caption pair's tokens; a
conversation's for a stage without few-shot):

- ``eval_inputs``: 4 x E n 3 R^2 pixels (+ the sub-image views);
- ``eval_activations``: the larger of two moments (the encoder's blocks are freed before the decoder runs). Encoding:
  the encoder's largest block, E n views P' (2 w + max(4 w, 2 m)), its patches and the image tokens,
  E n views (P w + k d), x a. Decoding: the image tokens and the decoder's largest block,
  E T_e (2 d + max(2 d + 2 g, 3 f)), x a, and the attention mask and its making, 3 E T_e^2 bytes (bool), with
- ``eval_kv_cache`` = 2 L E g T_e x a, plus one layer's copy while ``torch.cat`` grows it, and
- ``eval_logits``: the larger of the prefill's E T_e V x a and the held-out loss's 12 x E T_c V bytes (T_c a caption
  pair's tokens).

``flops_per_step`` = ``mm1core.flops.trial_flops(model, T, V).step(images=B I, positions=B T)``.
``tests/mm1core/test_estimate.py`` measures the peak of real trials and checks the estimate against it
(``bench/memory_estimate.py`` prints the table).

Not modelled: data parallelism (the estimate is of one process holding the whole batch; a rank of W holds B / W
rows but all the persistent terms), DataLoader worker processes (``data.workers``), ``torch.compile``'s caches and
allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mm1core.config import TrialConfig
from mm1core.connectors import CONNECTORS
from mm1core.data.lengths import (
    TEXT_TOKENS_PER_IMAGE,
    max_conversation_tokens,
    max_prompt_tokens,
    max_sample_tokens,
)
from mm1core.flops import trial_flops
from mm1core.lm.config import MoEConfig
from mm1core.lm.presets import LMPreset
from mm1core.stages import COMPONENTS, STAGES
from mm1core.vision.presets import ViTPreset

MIXED_PRECISION = ("bf16-mixed", "16-mixed")
FP32, GRADIENT_BYTES, ADAMW_BYTES, AUTOCAST_COPY_BYTES = 4, 4, 8, 2
LOGIT_BYTES = 12  # logits, their shifted copy, the fp32 log-softmax (per element of B x T x V)
MASK_BYTES = 3  # the boolean attention mask and the two made on the way (per element of E x T x T)
# What a trial process adds on a CPU besides its tensors (Lightning's trainer, the data pipeline, the kernels' code
# pages): the resident-set increment of a trial of a 1-token connector on a 16 px image, batch 1, lm-nano, less its
# tensors; measured with bench/memory_estimate.py (torch 2.13, lightning 2.6).
CPU_RUNTIME_BYTES = 32 * 2**20


@dataclass(frozen=True)
class TrialEstimate:
    """``peak_bytes``: the larger of ``training_bytes`` and ``evaluation_bytes``; ``breakdown``: that phase's terms
    (module docstring), summing to ``peak_bytes``; ``flops_per_step``: model FLOPs of one training step; the
    training batch's shape: ``row_length`` tokens and ``images_per_row`` images per row."""

    peak_bytes: int
    breakdown: dict[str, int]
    training_bytes: int
    evaluation_bytes: int
    flops_per_step: float
    row_length: int
    images_per_row: int


@dataclass(frozen=True)
class Shapes:
    """What the terms need, read once from the config (names as in the module docstring)."""

    encoder: ViTPreset
    decoder: LMPreset
    moe: MoEConfig | None
    vocab: int
    batch: int
    length: int
    images: float  # per row (a batch's mean, when measured)
    eval_images: int  # n, per prompt
    eval_length: int  # T_e
    caption_pair: int  # T_c
    views: int
    patches: int  # P per view
    positions: int  # P' per view
    image_side: int
    view_side: int
    act: int  # bytes per activation element
    device: str  # "cpu" or "gpu"
    built: frozenset[str]  # the components the stage builds
    trains: dict[str, bool]  # component -> whether autograd keeps its activations
    subimage: bool


def estimate_trial(
    config: TrialConfig,
    vocab_size: int,
    *,
    activation_checkpointing: bool = False,
    device: Literal["cpu", "gpu"] = "cpu",
    attention_kernel: Literal["fused", "math"] = "fused",
) -> TrialEstimate:
    """Peak memory and FLOPs of one trial of ``config`` (module docstring) with a tokenizer of ``vocab_size``."""
    shapes = trial_shapes(config, vocab_size, device)
    return estimate_shapes(config, shapes, activation_checkpointing, attention_kernel)


def estimate_shapes(
    config: TrialConfig, shapes: Shapes, activation_checkpointing: bool = False, attention_kernel: str = "fused"
) -> TrialEstimate:
    """``estimate_trial`` at given ``shapes`` (``trial_shapes``'s, or a batch's as measured)."""
    persistent = whole(persistent_terms(config, shapes))
    training = whole(training_terms(config, shapes, activation_checkpointing, attention_kernel))
    evaluation = whole(evaluation_terms(config, shapes))
    training_bytes = sum(persistent.values()) + sum(training.values())
    evaluation_bytes = sum(persistent.values()) + sum(evaluation.values())
    peak_phase = training if training_bytes >= evaluation_bytes else evaluation
    flops = trial_flops(config.model, shapes.length, shapes.vocab)
    return TrialEstimate(
        peak_bytes=max(training_bytes, evaluation_bytes),
        breakdown={**persistent, **peak_phase},
        training_bytes=training_bytes,
        evaluation_bytes=evaluation_bytes,
        flops_per_step=flops.step(images=shapes.batch * shapes.images, positions=shapes.batch * shapes.length),
        row_length=shapes.length,
        images_per_row=round(shapes.images),
    )


def whole(terms: dict[str, float]) -> dict[str, int]:
    """Whole bytes (a measured batch's mean images per row makes fractions)."""
    return {name: int(value) for name, value in terms.items()}


# --------------------------------------------------------------------------------------------------- shapes
def trial_shapes(config: TrialConfig, vocab_size: int, device: str) -> Shapes:
    """The shapes of ``config``'s largest training batch and evaluation batch on ``device`` (module docstring)."""
    model, stage = config.model, STAGES.get(config.train.stage)
    encoder, decoder = model.encoder.preset(), model.decoder.preset()
    length, images = training_rows(config, decoder.max_seq_len)
    built = frozenset(stage.components)
    images = images if "encoder" in built else 0
    trains = {part: part in built and not getattr(model, part).freeze for part in COMPONENTS}
    # A frozen part still keeps activations when a gradient must pass through it to a part before it that trains.
    trains["connector"] = trains["connector"] or trains["encoder"]
    trains["decoder"] = trains["decoder"] or (trains["connector"] and images > 0)
    eval_images, eval_length, caption_pair = evaluation_lengths(config, decoder.max_seq_len)
    grid = encoder.grid(model.view_resolution)
    precision = config.train.precision
    if precision == "auto":
        precision = "bf16-mixed" if device == "gpu" else "32-true"
    return Shapes(
        encoder=encoder,
        decoder=decoder,
        moe=model.decoder.moe,
        vocab=max(vocab_size, model.decoder.checkpoint_vocab_size()),
        batch=config.train.batch_size,
        length=length,
        images=images,
        eval_images=eval_images if "encoder" in built else 0,
        eval_length=eval_length,
        caption_pair=caption_pair,
        views=model.views_per_image,
        patches=grid * grid,
        positions=grid * grid + encoder.class_token,
        image_side=model.image_resolution,
        view_side=model.view_resolution,
        act=2 if precision in MIXED_PRECISION else FP32,
        device=device,
        built=built,
        trains=trains,
        subimage=model.highres.mode == "subimage",
    )


def training_rows(config: TrialConfig, limit: int) -> tuple[int, int]:
    """``(T, I)``: the longest training row in tokens and the most images one holds (module docstring)."""
    data, tokens_per_image = config.data, config.model.tokens_per_image
    if not STAGES.get(config.train.stage).logs_mixture:  # conversations, one image each (mm1core.data.sft)
        cap = min(data.seq_len or limit, limit)
        if data.sft.source == "synthetic":
            return min(cap, max_conversation_tokens(tokens_per_image)), 1
        return cap, 1
    mixture = data.mixture
    with_images = mixture.caption > 0 or mixture.interleaved > 0
    if data.seq_len is not None:  # packed: documents up to seq_len tokens and max_images images
        return data.seq_len, data.max_images if with_images else 0
    images = data.max_images if mixture.interleaved > 0 else int(mixture.caption > 0)
    streams = [stream for stream in ("caption", "interleaved", "text") if getattr(mixture, stream) > 0]
    if any(data.stream_source(stream) != "synthetic" for stream in streams):
        return limit, images  # documents from files: as long as the decoder takes
    return min(limit, max_sample_tokens(images, tokens_per_image)), images


# --------------------------------------------------------------------------------------------------- persistent
def persistent_terms(config: TrialConfig, shapes: Shapes) -> dict[str, int]:
    counts = config.model.parameter_counts(shapes.vocab)
    params = {part: counts[f"model.{part}.params"] if part in shapes.built else 0 for part in COMPONENTS}
    trainable = sum(count for part, count in params.items() if not getattr(config.model, part).freeze)
    total = sum(params.values())
    return {
        "parameters": FP32 * total,
        "gradients": GRADIENT_BYTES * trainable,
        "optimizer_state": ADAMW_BYTES * trainable,
        "autocast_weights": AUTOCAST_COPY_BYTES * total if shapes.act == 2 else 0,
        "runtime": CPU_RUNTIME_BYTES if shapes.device == "cpu" else 0,
    }


# --------------------------------------------------------------------------------------------------- training
def encoder_layer_elements(encoder: ViTPreset, positions: int) -> int:
    """Elements one ViT block keeps for backward per view (module docstring)."""
    width = encoder.width
    return positions * (8 * width + 2 * encoder.mlp_width + encoder.heads + 4)


def encoder_view_elements(encoder: ViTPreset, patches: int, positions: int, view_side: int, checkpointed: bool) -> int:
    """Elements the encoder keeps for backward per view: its blocks (or, checkpointed, their inputs), the final
    LayerNorm and the pixels the patch convolution keeps."""
    layer = encoder_layer_elements(encoder, positions)
    blocks = encoder.depth * (positions * encoder.width if checkpointed else layer)
    return blocks + patches * (encoder.width + 2) + 3 * view_side * view_side


def decoder_layer_elements(decoder: LMPreset, moe: MoEConfig | None, index: int) -> int:
    """Elements decoder block ``index`` keeps for backward per token (module docstring)."""
    d, g, f, h = decoder.width, decoder.num_kv_heads * decoder.head_dim, decoder.mlp_hidden, decoder.heads
    shared = 8 * d + 2 * g + h  # the two RMSNorms and attention
    if moe is not None and moe.is_moe_layer(index):
        return shared + moe.top_k * (3 * d + 4 * f) + 3 * moe.num_experts
    return shared + 4 * f


def decoder_token_elements(decoder: LMPreset, moe: MoEConfig | None, checkpointed: bool) -> int:
    """Elements the decoder keeps for backward per token: its blocks (or their inputs), the final norm, RoPE."""
    if checkpointed:
        blocks = decoder.depth * decoder.width
    else:
        blocks = sum(decoder_layer_elements(decoder, moe, index) for index in range(decoder.depth))
    return blocks + 3 * decoder.width + 2 * decoder.head_dim


def largest_layer(shapes: Shapes) -> int:
    """The saved elements of the largest block of a step: a decoder layer's B T share or an encoder block's N."""
    decoder = max(decoder_layer_elements(shapes.decoder, shapes.moe, i) for i in range(shapes.decoder.depth))
    views = shapes.batch * shapes.images * shapes.views
    encoder = views * encoder_layer_elements(shapes.encoder, shapes.positions) if shapes.trains["encoder"] else 0
    return max(shapes.batch * shapes.length * decoder, encoder)


def backward_elements(shapes: Shapes) -> int:
    """Gradients one block's backward holds at once: its input's and its MLP hidden layer's, two each."""
    decoder = 2 * shapes.batch * shapes.length * (shapes.decoder.width + shapes.decoder.mlp_hidden)
    views = shapes.batch * shapes.images * shapes.views
    encoder = 2 * views * shapes.positions * (shapes.encoder.width + shapes.encoder.mlp_width)
    return max(decoder, encoder if shapes.trains["encoder"] else 0)


def training_terms(config: TrialConfig, shapes: Shapes, checkpointed: bool, attention_kernel: str) -> dict[str, int]:
    views = shapes.batch * shapes.images * shapes.views
    tokens = shapes.batch * shapes.length
    encoder, act = shapes.encoder, shapes.act
    terms = {"inputs": input_bytes(shapes, shapes.batch * shapes.images) + 9 * tokens}
    encoder_elements = encoder_view_elements(encoder, shapes.patches, shapes.positions, shapes.view_side, checkpointed)
    terms["encoder_activations"] = act * views * encoder_elements if shapes.trains["encoder"] else 0
    terms["connector_activations"] = act * views * connector_view_elements(config, shapes)
    decoder_elements = decoder_token_elements(shapes.decoder, shapes.moe, checkpointed)
    terms["decoder_activations"] = act * tokens * decoder_elements if shapes.trains["decoder"] else 0
    terms["attention_scores"] = act * attention_score_elements(shapes) if attention_kernel == "math" else 0
    terms["logits"] = LOGIT_BYTES * tokens * shapes.vocab
    terms["backward_activations"] = act * backward_elements(shapes)
    if checkpointed:  # one block at a time is recomputed with everything it keeps
        terms["backward_activations"] += act * largest_layer(shapes)
    trainable = persistent_terms(config, shapes)["gradients"] // GRADIENT_BYTES
    step = 2 * FP32 * trainable if shapes.device == "gpu" else 0
    if step > sum(terms.values()) - terms["inputs"]:  # the step runs once the activations are freed
        return {"inputs": terms["inputs"], "optimizer_step": step}
    return terms


def input_bytes(shapes: Shapes, images: int) -> int:
    """The pixels of ``images`` images, and their sub-image views when there are several."""
    pixels = images * 3 * shapes.image_side**2
    if shapes.subimage:
        pixels += images * shapes.views * 3 * shapes.view_side**2
    return FP32 * pixels


def connector_view_elements(config: TrialConfig, shapes: Shapes) -> int:
    if not shapes.trains["connector"]:
        return 0
    connector = config.model.connector
    entry = CONNECTORS.get(connector.type)
    return entry.activation_elements(connector, shapes.encoder.width, shapes.decoder.width, shapes.patches)


def attention_score_elements(shapes: Shapes) -> int:
    """Softmax outputs the math kernel keeps: every decoder layer's B h T^2, every encoder block's N h_e P'^2."""
    decoder = shapes.decoder.depth * shapes.batch * shapes.decoder.heads * shapes.length**2
    views = shapes.batch * shapes.images * shapes.views
    encoder = shapes.encoder.depth * views * shapes.encoder.heads * shapes.positions**2
    return decoder + (encoder if shapes.trains["encoder"] else 0)


# --------------------------------------------------------------------------------------------------- evaluation
def evaluation_lengths(config: TrialConfig, limit: int) -> tuple[int, int, int]:
    """``(n, T_e, T_c)``: a prompt's images and tokens (prompt and answer), a held-out caption pair's tokens."""
    tokens_per_image = config.model.tokens_per_image
    caption_pair = tokens_per_image + TEXT_TOKENS_PER_IMAGE + 2
    if not STAGES.get(config.train.stage).few_shot:
        conversation = max_conversation_tokens(tokens_per_image) + config.eval.max_new_tokens
        return 1, min(limit, max(conversation, caption_pair)), caption_pair
    shots = max(config.eval.shots)
    prompt = max_prompt_tokens(shots, tokens_per_image) + config.eval.max_new_tokens
    return shots + 1, min(limit, max(prompt, caption_pair)), caption_pair


def evaluation_terms(config: TrialConfig, shapes: Shapes) -> dict[str, int]:
    """The larger of the evaluation's two moments: its images through the encoder, or its prompts through the
    decoder (the encoder's blocks are gone by then; the image tokens, cache, mask and logits are not)."""
    prompts, act = config.eval.batch_size, shapes.act
    length, caption_pair = shapes.eval_length, shapes.caption_pair
    encoder, decoder = shapes.encoder, shapes.decoder
    views = prompts * shapes.eval_images * shapes.views
    width, kv_width = decoder.width, decoder.num_kv_heads * decoder.head_dim
    image_tokens = views * config.model.connector.num_tokens * width
    encoder_block = views * shapes.positions * (2 * encoder.width + max(4 * encoder.width, 2 * encoder.mlp_width))
    encoding = act * (encoder_block + views * shapes.patches * encoder.width + image_tokens)
    decoder_block = prompts * length * (2 * width + max(2 * width + 2 * kv_width, 3 * decoder.mlp_hidden))
    decoding = {
        "eval_activations": act * (image_tokens + decoder_block) + MASK_BYTES * prompts * length**2,
        "eval_kv_cache": act * 2 * prompts * kv_width * length * (decoder.depth + 1),
        "eval_logits": max(act * prompts * length * shapes.vocab, LOGIT_BYTES * prompts * caption_pair * shapes.vocab),
    }
    inputs = {"eval_inputs": input_bytes(shapes, prompts * shapes.eval_images)}
    if encoding > sum(decoding.values()):
        return {**inputs, "eval_activations": encoding}
    return {**inputs, **decoding}
