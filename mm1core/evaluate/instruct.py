"""Instruction-style evaluation of a fine-tuned model (MM1 Sec. 5: the SFT model is asked, zero-shot, as a user
asks an assistant; no demonstrations).

Each test item of ``eval.tasks`` (the same items the pre-training evaluation scores: ``test_examples`` of the
embedded sets and of the file benchmarks) is put as one instruction through the chat template
(``sft.chat_prompt``), in the words the world's instruction data uses:

- captioning (an item whose query is MM1's ``<image> A photo of``): ``what is in this picture? answer in short.``
- VQA (``<image> Question: {question} Short answer:``): ``{question} answer in one word.``

The answer is generated greedily up to a newline or ``<eos>`` and scored with the task's own metric (CIDEr-D or
VQAv2 accuracy, percent): ``eval/sft/<task>``, their mean ``eval/sft/avg``, and ``eval/sft/loss``, the mean
next-token loss on the answers of held-out conversations (``sft.heldout_conversations``). Predictions come back
as rows of the pre-training tasks' table, with ``shots`` 0.
"""

from __future__ import annotations

import re

from mm1core.config import TrialConfig
from mm1core.data.dataset import LOGGER, truncate
from mm1core.data.records import IMAGE, Document
from mm1core.data.sft import chat_prompt, encode_conversation, heldout_conversations
from mm1core.data.tokenizer import TextTokenizer
from mm1core.data.world import CAPTION_REQUEST, ONE_WORD
from mm1core.evaluate.generate import complete
from mm1core.evaluate.scores import Evaluation, target_loss
from mm1core.evaluate.tasks import Example, FewShotTask, TaskResult, build_tasks, prediction_row
from mm1core.model import MM1Model

VQA_INSTRUCTION = "{question} " + ONE_WORD
_CAPTION_QUERY = re.compile(rf"{IMAGE}\s*a photo of", re.IGNORECASE)
_VQA_QUERY = re.compile(rf"{IMAGE}\s*question:\s*(?P<question>.*?)\s*short answer:", re.IGNORECASE | re.DOTALL)


def instruction(example: Example) -> str:
    """The instruction that asks what ``example``'s few-shot query asks (module docstring); ``ValueError`` for a
    query of neither of MM1's forms."""
    if _CAPTION_QUERY.fullmatch(example.query):
        return CAPTION_REQUEST
    question = _VQA_QUERY.fullmatch(example.query)
    if question:
        return VQA_INSTRUCTION.format(question=question["question"])
    raise ValueError(f"no instruction for the query {example.query!r}: neither captioning nor VQA")


def instruction_prompt(example: Example) -> Document:
    """The test item as an open single-turn conversation: its image, then its instruction, up to ``answer:``."""
    return Document(chat_prompt(f"{IMAGE} {instruction(example)}"), (example.image,), "prompt")


def instruction_score(task: FewShotTask, model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> TaskResult:
    """``task``'s test items asked zero-shot through the chat template, scored by the task's metric."""
    tests = task.test_examples(cfg)
    if not tests:
        raise ValueError(f"{task.name}: no test item to evaluate")
    prompts = [instruction_prompt(test) for test in tests]
    answers = complete(model, cfg, tokenizer, prompts)
    score = task.metric([test.references for test in tests], answers)
    rows = [
        prediction_row(task.name, 0, test.item, prompt.text, answer, test.references)
        for test, prompt, answer in zip(tests, prompts, answers, strict=True)
    ]
    return TaskResult(score, rows[: cfg.eval.predictions])


def instruction_loss(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> dict[str, float]:
    """``{"eval/sft/loss": ...}``: mean next-token loss per answer token over the held-out conversations (empty
    when a small JSON source holds none out). Run under ``torch.inference_mode``."""
    num_tokens, resolution = cfg.model.tokens_per_image, cfg.model.image_resolution
    max_tokens = cfg.data.seq_len or cfg.model.decoder.preset().max_seq_len
    samples = [
        truncate(
            dict(encode_conversation(conversation, tokenizer, num_tokens, resolution)),
            max_tokens,
            tokenizer.image_id,
            num_tokens,
        )
        for conversation in heldout_conversations(cfg)
    ]
    if not samples:
        LOGGER.warning("no held-out conversation: eval/sft/loss is not reported (the JSON holds too few)")
        return {}
    return {"eval/sft/loss": target_loss(model, samples, cfg.eval.batch_size, tokenizer.pad_id)}


def instruction_evaluation(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer) -> Evaluation:
    """``eval/sft/<task>`` for every task of ``cfg.eval.tasks``, ``eval/sft/avg`` and ``eval/sft/loss``. The model
    is in eval mode, under ``torch.inference_mode`` and the trial's autocast (``mm1core.evaluate.harness.evaluate``
    sees to it)."""
    result = Evaluation({})
    scores = {}
    for task in build_tasks(cfg):
        if not isinstance(task, FewShotTask):
            raise TypeError(f"{task.name}: not a generation task, it has no items to ask")
        outcome = instruction_score(task, model, cfg, tokenizer)
        scores[task.name] = outcome.score
        result.predictions += outcome.predictions
    result.metrics.update({f"eval/sft/{name}": value for name, value in scores.items()})
    if scores:
        result.metrics["eval/sft/avg"] = sum(scores.values()) / len(scores)
    result.metrics.update(instruction_loss(model, cfg, tokenizer))
    return result
