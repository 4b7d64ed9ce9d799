"""The ``featcodec`` command.  Imports nothing heavy until a subcommand needs it."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

USAGE = """usage: featcodec <command> [options]

commands:
  search CONFIG    Optuna search over (C_r, S, lambda, Q): trials, Pareto frontier, plot, rate bank
  train CONFIG     train the config's one bottleneck and measure its true bpp
  evaluate CONFIG  measure saved units (default: the run's frontier) and the image-codec baselines
  demo             the CVPR 2023 comparisons on scikit-learn's digits through the search runner (true bpp)
  serve            serve split inference over gRPC: decode rate-bank messages, run the network's tail

Run `featcodec COMMAND --help` for a command's options; under torchrun, search and train use DDP.
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command == "demo":
        from .split.demo import main as demo_main  # torch is imported here, only for the demo

        return demo_main(rest)
    if command == "serve":
        from .serving.cli import main as serve_main  # grpc and torch are imported here, only for serving

        return serve_main(rest)
    if command in ("search", "train", "evaluate"):
        from .split.runner import main as runner_main  # torch and optuna are imported here

        return runner_main(command, rest)
    print(f"featcodec: unknown command {command!r}\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
