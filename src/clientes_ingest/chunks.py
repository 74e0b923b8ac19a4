"""Chunk planning and line-aligned block reading for ``CLIENTES_IN_MMYY.dat`` (pure, no Prefect).

Two streaming pieces that never hold a whole file:

* :class:`ChunkPlanner` is fed the file's bytes once, in order (while the file is stored or hashed), and
  cuts it into chunks of about ``chunk_size`` bytes that start on line starts, numbering their lines.
  Memory is O(number of chunks).
* :func:`iter_line_blocks` turns the byte range of one chunk, arriving as pieces of any size (ranged
  reads), into blocks of whole lines of about ``block_size`` bytes for the parser. A line longer than
  ``max_line_bytes`` comes out as a :class:`LongLine` (its first bytes and its length) without being
  buffered. Memory is about ``2 * block_size + max_line_bytes``.

Line numbers are 1-based; a line is what ``data.split(b"\\n")`` yields, except that the empty string after
a final ``b"\\n"`` is not a line. Requires: numpy (imported only when blocks are read, so planning
alone, in the flow-run process, does not load it).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

LONG_LINE_KEEP = 1024
_NL = 10


@dataclass(frozen=True)
class ChunkSpec:
    """A byte range of the file that starts on a line start; the unit of one ``process_chunk`` task."""

    index: int
    start: int
    end: int
    first_line: int
    line_count: int

    @property
    def size(self) -> int:
        return self.end - self.start


class ChunkPlanner:
    """Finds chunk boundaries in a file fed block by block, in order.

    A boundary is placed at the first line start at or after each multiple of ``chunk_size`` past the
    previous boundary, so a line longer than ``chunk_size`` makes a bigger chunk instead of being split.
    Memory: O(number of chunks), never the file.
    """

    def __init__(self, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 byte, got {chunk_size}")
        self.chunk_size = chunk_size
        self.size = 0
        self.total_lines = 0
        self._newlines = 0
        self._last_byte_newline = False
        # (byte offset, newlines before it) for each chunk start; the first chunk starts at 0.
        self._starts: list[tuple[int, int]] = [(0, 0)]
        # Where the search for the next b"\n" resumes: target - 1, or the first byte not yet searched.
        self._search_from = chunk_size - 1
        self._finished = False

    def feed(self, data: bytes) -> None:
        """Account for the next ``data`` bytes of the file."""
        if self._finished:
            raise RuntimeError("ChunkPlanner.feed() called after finish()")
        if not data:
            return
        base = self.size
        length = len(data)
        counted = 0  # local offset up to which newlines were added to self._newlines
        while True:
            local = self._search_from - base
            if local >= length:
                break
            i = data.find(b"\n", max(local, 0))
            if i < 0:
                self._search_from = base + length
                break
            boundary = i + 1
            self._newlines += data.count(b"\n", counted, boundary)
            counted = boundary
            self._starts.append((base + boundary, self._newlines))
            self._search_from = base + boundary + self.chunk_size - 1
        self._newlines += data.count(b"\n", counted)
        self.size = base + length
        self._last_byte_newline = data[-1] == _NL

    def finish(self) -> list[ChunkSpec]:
        """The chunks of the file fed so far (call after the last ``feed``); an empty file has none."""
        self._finished = True
        if self.size == 0:
            self.total_lines = 0
            return []
        self.total_lines = self._newlines + (0 if self._last_byte_newline else 1)
        starts = self._starts
        if starts[-1][0] == self.size:  # a boundary after the final b"\n" starts no line
            starts = starts[:-1]
        chunks: list[ChunkSpec] = []
        for index, (start, before) in enumerate(starts):
            if index + 1 < len(starts):
                end, next_before = starts[index + 1]
                line_count = next_before - before
            else:
                end, line_count = self.size, self.total_lines - before
            chunks.append(ChunkSpec(index, start, end, before + 1, line_count))
        return chunks


def plan_chunks(blocks: Iterable[bytes], chunk_size: int) -> list[ChunkSpec]:
    """Plan the chunks of a file given as consecutive blocks of bytes."""
    planner = ChunkPlanner(chunk_size)
    for block in blocks:
        planner.feed(block)
    return planner.finish()


@dataclass(frozen=True)
class LineBlock:
    """Whole lines of a chunk (each ends in ``b"\\n"`` except possibly the file's last line)."""

    data: bytes
    first_line: int
    file_start: bool


@dataclass(frozen=True)
class LongLine:
    """A line longer than the reader's ``max_line_bytes``: only its start and its length are kept."""

    line_number: int
    prefix: bytes
    length: int
    # False only for the file's last line when it has no b"\n": then it covers ``length`` bytes, not +1.
    terminated: bool = True

    @property
    def bytes_covered(self) -> int:
        return self.length + (1 if self.terminated else 0)


class _BlockReader:
    """State of :func:`iter_line_blocks`; see there."""

    def __init__(self, first_line: int, block_size: int, max_line_bytes: int, file_start: bool) -> None:
        if block_size < 1 or max_line_bytes < 1:
            raise ValueError(f"block_size ({block_size}) and max_line_bytes ({max_line_bytes}) must be >= 1")
        self.line = first_line
        self.block_size = block_size
        self.max_line = max_line_bytes
        self.at_file_start = file_start
        self.buf = bytearray()
        self.pos = 0  # buf[:pos] was already emitted
        self.tail = 0  # buf[tail:] is an unfinished line (no b"\n"); buf[pos:tail] are whole lines
        self.skipping = False  # streaming past a long line: only its prefix and length are kept
        self.skip_prefix = bytearray()
        self.skip_length = 0

    def feed(self, piece: bytes) -> Iterator[LineBlock | LongLine]:
        if not isinstance(piece, bytes | bytearray):
            piece = bytes(piece)  # e.g. a memoryview: bytes.find is needed below
        offset, length = 0, len(piece)
        while offset < length:
            if self.skipping:
                offset = yield from self._skip(piece, offset, length)
                continue
            # Append at most one block at a time so the buffer stays bounded whatever the piece size.
            stop = min(offset + self.block_size, length)
            before = len(self.buf)
            with memoryview(piece) as view:
                self.buf += view[offset:stop]
            offset = stop
            last_nl = self.buf.rfind(b"\n", before)
            if last_nl >= 0:
                self.tail = last_nl + 1
            yield from self._drain(final=False)

    def _skip(self, piece: bytes | bytearray, offset: int, length: int) -> Generator[LongLine, None, int]:
        """Stream past the long line's bytes in ``piece[offset:length]``; return where scanning resumes."""
        i = piece.find(b"\n", offset, length)
        stop = length if i < 0 else i
        missing = LONG_LINE_KEEP - len(self.skip_prefix)
        if missing > 0:
            self.skip_prefix += piece[offset : min(stop, offset + missing)]
        self.skip_length += stop - offset
        if i < 0:
            return length
        yield self._end_skip(terminated=True)
        return i + 1

    def _end_skip(self, *, terminated: bool) -> LongLine:
        item = LongLine(self.line, bytes(self.skip_prefix), self.skip_length, terminated)
        self.line += 1
        self.skipping = False
        self.skip_prefix = bytearray()
        self.skip_length = 0
        return item

    def _drain(self, *, final: bool) -> Iterator[LineBlock | LongLine]:
        buf = self.buf
        while self.tail - self.pos >= self.block_size:
            cut = buf.rfind(b"\n", self.pos, self.pos + self.block_size) + 1
            if cut == 0:  # the first line alone is longer than a block; it ends before tail
                cut = buf.find(b"\n", self.pos + self.block_size, self.tail) + 1
            yield from self._emit(self.pos, cut)
        unfinished = len(buf) - self.tail
        if final or unfinished > self.max_line:
            if self.tail > self.pos:
                yield from self._emit(self.pos, self.tail)
            if final and unfinished:
                yield from self._emit(self.tail, len(buf))
            elif unfinished:
                # Too long to buffer: keep its start, count the rest as it streams past.
                self.skipping = True
                self.skip_prefix = bytearray(buf[self.tail : self.tail + LONG_LINE_KEEP])
                self.skip_length = unfinished
                self.at_file_start = False
                self.pos = self.tail = len(buf)
        # Compact once per appended block: deleting from the front of a bytearray is a memmove.
        del buf[: self.pos]
        self.tail -= self.pos
        self.pos = 0

    def _emit(self, start: int, end: int) -> Iterator[LineBlock | LongLine]:
        """Yield buf[start:end] (whole lines, the last maybe unterminated) with long lines split out."""
        self.pos = end
        with memoryview(self.buf) as view:
            data = bytes(view[start:end])
        if len(data) <= self.max_line:  # no line in it can be too long
            yield self._block(data)
            return
        import numpy as np  # here, not at the top: the flow-run process plans chunks without numpy

        arr = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(arr == _NL)
        if data[-1] != _NL:
            ends = np.append(ends, len(data))
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        long_lines = np.flatnonzero(ends - starts > self.max_line)
        if long_lines.size == 0:
            yield self._block(data, lines=len(ends))
            return
        mv = memoryview(data)
        seg_start = 0
        for j in long_lines.tolist():
            line_start, line_end = int(starts[j]), int(ends[j])
            if line_start > seg_start:
                yield self._block(bytes(mv[seg_start:line_start]))
            self.at_file_start = False
            terminated = line_end < len(data)
            prefix = data[line_start : min(line_start + LONG_LINE_KEEP, line_end)]
            yield LongLine(self.line, prefix, line_end - line_start, terminated)
            self.line += 1
            seg_start = line_end + 1 if terminated else line_end
        if seg_start < len(data):
            yield self._block(bytes(mv[seg_start:]))

    def _block(self, data: bytes, lines: int | None = None) -> LineBlock:
        item = LineBlock(data, self.line, self.at_file_start)
        self.at_file_start = False
        if lines is None:
            lines = data.count(b"\n") + (0 if data[-1] == _NL else 1)
        self.line += lines
        return item

    def finish(self) -> Iterator[LineBlock | LongLine]:
        if self.skipping:
            yield self._end_skip(terminated=False)
        else:
            yield from self._drain(final=True)


def iter_line_blocks(
    pieces: Iterable[bytes],
    first_line: int,
    *,
    block_size: int,
    max_line_bytes: int,
    file_start: bool = False,
) -> Iterator[LineBlock | LongLine]:
    """Re-block one chunk's bytes (pieces of any size) into numbered blocks of whole lines.

    Blocks are about ``block_size`` bytes and end on a line boundary (a line longer than ``block_size``
    but not than ``max_line_bytes`` makes one bigger block). A line longer than ``max_line_bytes``
    (without its ``b"\\n"``) is yielded as a :class:`LongLine` and streamed past, never buffered whole.
    Every line comes out exactly once, in order; no block is empty.
    """
    reader = _BlockReader(first_line, block_size, max_line_bytes, file_start)
    for piece in pieces:
        if piece:
            yield from reader.feed(piece)
    yield from reader.finish()
