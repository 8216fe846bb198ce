"""Draft a contract for a new dataset from a sample file, validate it, say what comes next.

python -m pipelines.new_dataset NAME --sample FILE [--target EXPR] [--time EXPR]
    [--positive VALUE] [--label-delay D] [--timezone ZONE] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from driftloop.data.contract import ContractError, load_contract
from driftloop.drafting.draft import draft_contract
from driftloop.drafting.render import check_sample, render
from driftloop.paths import contracts_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.new_dataset",
        description="Write contracts/NAME.yaml drafted from a CSV or Parquet sample.",
    )
    parser.add_argument("name", help="dataset name: lower case letters, digits and '_'")
    parser.add_argument("--sample", required=True, type=Path, help="a CSV or Parquet file")
    parser.add_argument(
        "--target", required=True, help="the target: a column, or SQL over columns ('x > 15')"
    )
    parser.add_argument(
        "--positive",
        default=None,
        help="for a two-valued target column: its positive class (default: the rarer value)",
    )
    parser.add_argument("--time", default=None, help="event time: a column or SQL over columns")
    parser.add_argument("--label-delay", default=None, help="e.g. 1d, 6h (default 1d)")
    parser.add_argument("--timezone", default="UTC", help="zone of the partition days")
    parser.add_argument("--contracts-dir", type=Path, default=None, help="default: contracts/")
    parser.add_argument("--force", action="store_true", help="overwrite an existing contract")
    args = parser.parse_args(argv)

    folder = args.contracts_dir or contracts_dir()
    target = folder / f"{args.name}.yaml"
    if target.exists() and not args.force:
        print(f"error: {target} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        draft = draft_contract(
            args.name,
            args.sample,
            args.target,
            args.time,
            args.label_delay,
            args.timezone,
            positive=args.positive,
        )
    except (ValueError, OSError) as error:
        print(f"error: sample {args.sample}: {error}", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    draft_file = target.with_name(f".{target.name}.draft")
    draft_file.write_text(render(draft))
    try:
        contract = load_contract(draft_file)
    except ContractError as error:
        print(
            f"error: the draft does not validate (kept in {draft_file}):\n{error}", file=sys.stderr
        )
        return 1
    draft_file.replace(target)
    print(f"wrote {target}: {len(contract.columns)} columns, {len(contract.features)} features")
    for note in draft.notes:
        print(f"  left out {note}")
    print(check_sample(contract, args.sample))
    print("next:")
    print(f"  cp FILES data/landing/{args.name}/    # land files (or $DRIFTLOOP_DATA_DIR/landing)")
    print(f"  uv run python -m pipelines.dev       # see the {args.name} graph at 127.0.0.1:3000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
