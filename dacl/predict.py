"""``dacl predict``: the expressions of the faces in pictures, folders, globs and videos, one
row per face, as CSV or JSON lines, with progress on stderr and a clean stop on Ctrl-C or
SIGTERM. The rows come from :func:`dacl.predictor.predict_files`."""

from __future__ import annotations

import csv
import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TextIO

from tqdm import tqdm

from dacl import pretrained
from dacl.errors import DACLError
from dacl.outputs import Pending, check_apart, check_folder
from dacl.pictures import BOX, annotation_paths, expand, read_boxes
from dacl.predictor import Predictor, add_model_options, chosen_model, predict_files

if TYPE_CHECKING:  # the command's parser; jsonargparse is imported when the command runs
    from jsonargparse import Namespace

    from dacl.usage import ProgramParser


def shipped_model(tta: str, name: str | None = None) -> str:
    """One line naming a shipped model (default: the default one) and its validation accuracy
    with the test-time views ``tta``."""
    config = pretrained.read_config(name)
    return f"the shipped model {config['name']}: {pretrained.scores(config, tta)}"


#: Seconds between ``dacl predict``'s progress lines where stderr is not a terminal.
PROGRESS_EVERY = 5.0


class Progress:
    """How far ``dacl predict`` has come: files taken, rows written, faces predicted. On a
    terminal, tqdm's bar over the files; elsewhere (a pipe, a log file) a line every
    :data:`PROGRESS_EVERY` seconds with the files done, the faces and the faces per second."""

    def __init__(self, files: Sequence[Path], stream: TextIO) -> None:
        self.files, self.stream = files, stream
        self.taken = self.rows = self.faces = 0
        self.start = self.shown = time.monotonic()
        self.bar: tqdm | None = None

    def __iter__(self) -> Iterator[Path]:
        if self.stream.isatty():
            self.bar = tqdm(self.files, desc="dacl predict", unit="file", file=self.stream)
        for path in self.bar if self.bar is not None else self.files:
            self.taken += 1  # as the bar counts: its rows may wait for a batch to fill
            yield path

    def count(self, row: dict[str, Any]) -> None:
        """A row written; a progress line when one is due."""
        self.rows += 1
        self.faces += not row["error"]
        now = time.monotonic()
        if self.bar is None and now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            rate = self.faces / (now - self.start)
            print(
                f"dacl predict: {self.taken:,}/{len(self.files):,} files, {self.faces:,} faces, "
                f"{rate:.1f} faces/s", file=self.stream, flush=True,
            )  # fmt: skip

    def close(self) -> None:
        """End the bar's line, if there is one."""
        if self.bar is not None:
            self.bar.close()


def _parser() -> ProgramParser:
    """``dacl predict``'s options."""
    from jsonargparse import ActionConfigFile

    from dacl.usage import ProgramParser

    parser = ProgramParser(
        prog="dacl predict",
        description="Expressions of the faces in pictures and videos (files, folders, glob "
        "patterns), one row per face. A dataset split's predictions: `dacl predict_split`.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="these options as a file")
    parser.add_argument("paths", nargs="*", help="pictures, videos, folders or globs")
    add_model_options(parser)
    parser.add_argument(
        "--out", type=str | None, default=None,
        help="file; default: stdout. Written beside it and renamed into place when complete",
    )  # fmt: skip
    parser.add_argument("--format", type=Literal["csv", "jsonl"], default="csv")
    parser.add_argument(
        "--faces", type=Literal["crop", "detect"], default="crop",
        help="crop: each picture is one face (as in FER2013); detect: find the faces in photos",
    )  # fmt: skip
    parser.add_argument(
        "--boxes", type=str | None, default=None,
        help="a CSV of face boxes from your own detector (file, [frame,] x, y, width, height); "
        "replaces --faces",
    )  # fmt: skip
    parser.add_argument("--attention", type=bool, default=False, help="add the 512 weights")
    parser.add_argument("--every", type=int, default=1, help="videos: every N-th frame")
    parser.add_argument("--annotate", type=str | None, default=None, help="folder for pictures")
    parser.add_argument("--batch_size", type=int, default=64, help="pictures per forward pass")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    return parser


def write_rows(args: Namespace, files: Sequence[Path], progress: Progress, stream: TextIO) -> int:
    """The rows of ``files`` written to ``stream`` as ``args`` ask; how many files could not
    be read."""
    faces = read_boxes(args.boxes) if args.boxes else args.faces  # bad boxes: before any work
    drawn = annotation_paths(files, Path(args.annotate)) if args.annotate else None
    source = chosen_model(args)
    predictor = Predictor.load(source, args.tta, device=args.device, batch_size=args.batch_size)
    if args.ckpt_path is None:
        model = shipped_model(predictor.tta, args.model)
        print(f"dacl predict: using {model}", file=sys.stderr)
    columns = ["file", "frame", *BOX, "prediction", "confidence"]
    columns += [f"p_{c}" for c in predictor.class_names] + ["error"]
    columns += ["attention"] if args.attention else []
    writer = csv.DictWriter(stream, columns, restval="") if args.format == "csv" else None
    if writer:
        writer.writeheader()
    failed = 0
    for row in predict_files(predictor, progress, faces, args.attention, args.every, drawn):
        failed += bool(row["error"]) and not row["error"].endswith("no face found")
        if writer is None:
            stream.write(json.dumps(row) + "\n")
        else:
            if args.attention:
                row["attention"] = " ".join(map(str, row.get("attention", [])))
            writer.writerow(row)
        progress.count(row)
    return failed


class _Terminated(Exception):
    """SIGTERM, raised where ``dacl predict`` is, so that it stops as on Ctrl-C."""


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise _Terminated


def _stopped(progress: Progress, pending: Pending | None, signum: int) -> NoReturn:
    """Ctrl-C or SIGTERM: one line saying how many rows were written and where; exit status
    128 + the signal's number (130, 143)."""
    progress.close()
    if pending is None:
        where = f"{progress.rows:,} rows written to stdout"
    elif progress.rows:
        pending.file.close()
        where = f"{progress.rows:,} rows kept in '{pending.path}', '{pending.target}' untouched"
    else:
        pending.discard()
        where = f"no rows yet, '{pending.target}' untouched"
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    print(f"dacl predict: stopped ({what}): {where}", file=sys.stderr)
    sys.exit(128 + signum)


def main(argv: list[str]) -> None:
    """``dacl predict --ckpt_path FILE PATH...``: a row per picture, as CSV or JSON lines, on
    stdout or into ``--out`` (written beside it, renamed into place when complete; Ctrl-C keeps
    the rows so far beside it, as does SIGTERM). Exit status 1 when a picture could not be read
    (its row says why; the others are predicted), 2 for a usage error, 130 after Ctrl-C, 143
    after SIGTERM."""
    args = _parser().parse_args(argv)
    if not args.paths:
        raise DACLError(
            "dacl predict takes pictures, videos, folders or globs; a dataset split's "
            "predictions: dacl predict_split --config C --ckpt_path X"
        )
    if args.every < 1 or args.batch_size < 1:
        raise DACLError("--every and --batch_size must be at least 1")
    files = expand(args.paths)
    if not files:
        raise DACLError(f"no pictures found in {', '.join(args.paths)}")
    if args.annotate:  # output paths checked before the model loads
        check_folder(Path(args.annotate), "--annotate folder")
    if args.out:
        check_apart(args.out, files, "--out", "pictures")
    pending = Pending(args.out, "--out") if args.out else None
    progress = Progress(files, sys.stderr)
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        failed = write_rows(args, files, progress, pending.file if pending else sys.stdout)
    except KeyboardInterrupt:
        _stopped(progress, pending, signal.SIGINT)
    except _Terminated:
        _stopped(progress, pending, signal.SIGTERM)
    except BaseException:
        if pending is not None:
            pending.discard()
        raise
    finally:
        signal.signal(signal.SIGTERM, before)
    if pending is not None and pending.commit():
        print(f"dacl predict: replaced the earlier '{args.out}'", file=sys.stderr)
    if failed:
        print(
            f"dacl predict: {failed} of {len(files)} files could not be read in full "
            "(see their error rows)",
            file=sys.stderr,
        )
        sys.exit(1)
