"""Convert a SynFundus-1M release folder (images + metadata CSV/TSV) into a sharded parquet `datasets` folder.

    python convert_synfundus.py RELEASE_DIR OUT_DIR [--workers 8] [--rows-per-shard 1000]
    python convert_synfundus.py RELEASE_DIR OUT_DIR --push-to-hub your-org/synfundus-1m   # private dataset repo

Every row is validated (image present inside the release, decodable, MD5, label ranges); rejected rows go to
OUT_DIR/rejected.csv with reasons. Re-running resumes: complete shards are kept. Exit status: 0 when every row was
converted, 1 when some were rejected, 2 on a usage or input error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import HfApi
from tqdm.auto import tqdm

from ..cards import render_dataset_card
from ..convert import convert_release, find_metadata, scan_metadata
from ..hub import repo_id_problem
from ..locking import HOLDER_FILE, LOCK_FILE
from ..shards import atomic_write_bytes


def push_to_hub(out_dir: Path, repo_id: str, private: bool, token: str | None) -> str:
    """Create the dataset repo (private unless told otherwise) and upload the folder; returns its URL."""
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(out_dir),
        ignore_patterns=["reports/*", ".tmp-*", "data/.tmp-*", LOCK_FILE, HOLDER_FILE],
        commit_message="Upload SynFundus-1M parquet conversion",
    )
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("release", type=Path, help="release folder holding the images and the metadata file")
    parser.add_argument("out_dir", type=Path, help="output dataset folder (resumable)")
    parser.add_argument("--metadata", type=Path, help="metadata CSV/TSV (default: the one at the release root)")
    parser.add_argument("--rows-per-shard", type=int, default=1000, help="rows per parquet shard (default 1000)")
    parser.add_argument("--workers", type=int, default=1, help="processes converting shards in parallel")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload to this Hub dataset repo")
    parser.add_argument("--public", action="store_true", help="create the Hub repo public (default: private)")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    args = parser.parse_args(argv)
    if args.push_to_hub is not None and (problem := repo_id_problem(args.push_to_hub)):
        parser.error(f"--push-to-hub: {problem}")

    try:
        total, _ = scan_metadata(find_metadata(args.release.resolve(), args.metadata))
        with tqdm(total=total, desc="converting", unit="row") as bar:
            summary = convert_release(
                args.release,
                args.out_dir,
                metadata=args.metadata,
                rows_per_shard=args.rows_per_shard,
                workers=args.workers,
                progress=bar.update,
            )
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    table = find_metadata(args.release.resolve(), args.metadata)
    card = render_dataset_card(
        repo_id=args.push_to_hub or str(args.out_dir),
        num_rows=summary.rows,
        num_converted=summary.converted,
        num_rejected=summary.rejected,
        num_shards=summary.shards_written + summary.shards_skipped,
        rows_per_shard=args.rows_per_shard,
        counts=summary.counts,
        extra_columns=table.extra,
    )
    atomic_write_bytes(args.out_dir / "README.md", str(card).encode())
    print(
        f"{summary.converted} of {summary.rows} rows converted into {args.out_dir} "
        f"({summary.shards_written} shards written, {summary.shards_skipped} already complete)"
    )
    if table.missing_optional or table.extra:
        print(f"columns: optional missing {table.missing_optional}, extra carried through {table.extra}")
    if args.push_to_hub:
        try:
            print(f"uploaded to {push_to_hub(args.out_dir, args.push_to_hub, not args.public, args.token)}")
        except Exception as error:  # authentication, network: the local folder is complete either way
            print(
                f"{parser.prog}: error: upload to {args.push_to_hub} failed ({type(error).__name__}: "
                f"{error}); the converted folder {args.out_dir} is intact",
                file=sys.stderr,
            )
            return 2
    if summary.rejected:
        print(f"{summary.rejected} rows rejected: see {args.out_dir / 'rejected.csv'}", file=sys.stderr)
        return 1
    return 0
