"""Chunk planning and line-aligned block reading, checked against ``bytes.split(b"\\n")`` numbering."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientes_ingest.chunks import (
    LONG_LINE_KEEP,
    ChunkPlanner,
    ChunkSpec,
    LineBlock,
    LongLine,
    iter_line_blocks,
    plan_chunks,
)


def file_lines(data: bytes) -> list[bytes]:
    """The lines of a file: split on b"\\n", without the empty string after a final b"\\n"."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return parts


def random_pieces(data: bytes, rng: random.Random, max_piece: int) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        n = rng.randint(1, max_piece)
        yield data[i : i + n]
        i += n


def check_plan(data: bytes, chunks: list[ChunkSpec], chunk_size: int) -> None:
    """Contiguous, covering [0, size), on line starts, numbered like split(), boundaries where promised."""
    lines = file_lines(data)
    if not data:
        assert chunks == []
        return
    assert chunks[0].start == 0 and chunks[-1].end == len(data)
    line_starts = {0} | {i + 1 for i, b in enumerate(data) if b == 10}
    expected_first = 1
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.start < chunk.end
        assert chunk.start in line_starts
        assert chunk.first_line == expected_first
        assert file_lines(data[chunk.start : chunk.end]) == lines[chunk.first_line - 1 : chunk.first_line - 1 +
                                                                  chunk.line_count]
        if index + 1 < len(chunks):
            assert chunk.end == chunks[index + 1].start
            # The next boundary is the first line start at or after start + chunk_size.
            assert chunk.end == min(s for s in line_starts if s >= chunk.start + chunk_size)
        else:
            assert not any(chunk.start + chunk_size <= s < len(data) for s in line_starts)
        expected_first += chunk.line_count
    assert sum(c.line_count for c in chunks) == len(lines)


HAND_MADE = {
    "empty": b"",
    "one line": b"Ana|Gomez|12345678|Activo|1/2/2020|true|false\n",
    "no trailing newline": b"a|b\nc|d\nlast line without newline",
    "only newlines": b"\n\n\n\n\n",
    "single newline": b"\n",
    "single byte": b"x",
    "line longer than chunk": b"short\n" + b"L" * 500 + b"\nshort again\n" + b"M" * 300,
    "crlf": b"one\r\ntwo\r\n\r\nthree\r\n",
    "unicode": "María|Gómez\nJosé|Núñez\nO'Kon|D'Amore\n".encode(),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 10_000])
def test_plan_hand_made_files(name: str, chunk_size: int) -> None:
    data = HAND_MADE[name]
    whole = plan_chunks([data], chunk_size)
    check_plan(data, whole, chunk_size)
    rng = random.Random(f"{name}-{chunk_size}")
    for max_piece in (1, 3, 50):
        assert plan_chunks(random_pieces(data, rng, max_piece), chunk_size) == whole


def test_plan_known_boundaries() -> None:
    # Targets at 4 then 8: the line starts at or after them are 4 and (end of file) 9 -> two chunks.
    assert plan_chunks([b"aaa\nbb\nc\n"], 4) == [ChunkSpec(0, 0, 4, 1, 1), ChunkSpec(1, 4, 9, 2, 2)]
    # chunk_size 1 puts every line in its own chunk.
    assert plan_chunks([b"a\n\nbc"], 1) == [ChunkSpec(0, 0, 2, 1, 1), ChunkSpec(1, 2, 3, 2, 1),
                                           ChunkSpec(2, 3, 5, 3, 1)]
    # A line far longer than chunk_size makes one big chunk; it is never split.
    data = b"x\n" + b"y" * 1000 + b"\nz\n"
    assert [(c.start, c.end) for c in plan_chunks([data], 10)] == [(0, 1003), (1003, 1005)]


def test_planner_counts_and_guards() -> None:
    planner = ChunkPlanner(16)
    for piece in (b"ab\n", b"", b"cd", b"\nef"):
        planner.feed(piece)
    assert planner.size == 8
    chunks = planner.finish()
    assert planner.total_lines == 3 and len(chunks) == 1
    with pytest.raises(RuntimeError, match="after finish"):
        planner.feed(b"more")
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkPlanner(0)
    empty = ChunkPlanner(8)
    assert empty.finish() == [] and empty.total_lines == 0


def read_all(data: bytes, chunks: list[ChunkSpec], rng: random.Random, block_size: int,
             max_line_bytes: int, max_piece: int) -> list[tuple[int, bytes | LongLine]]:
    """Read every chunk with iter_line_blocks and flatten to (line number, line or LongLine)."""
    out: list[tuple[int, bytes | LongLine]] = []
    for chunk in chunks:
        pieces = random_pieces(data[chunk.start : chunk.end], rng, max_piece)
        reproduced = bytearray()
        next_line = chunk.first_line
        for item in iter_line_blocks(pieces, chunk.first_line, block_size=block_size,
                                     max_line_bytes=max_line_bytes, file_start=chunk.start == 0):
            if isinstance(item, LineBlock):
                assert item.data, "empty LineBlock"
                assert item.first_line == next_line
                assert item.file_start == (chunk.start == 0 and not reproduced)
                block_lines = file_lines(item.data)
                assert all(len(line) <= max_line_bytes for line in block_lines)
                out.extend((item.first_line + k, line) for k, line in enumerate(block_lines))
                next_line += len(block_lines)
                reproduced += item.data
            else:
                assert isinstance(item, LongLine)
                assert item.line_number == next_line
                assert item.length > max_line_bytes
                out.append((item.line_number, item))
                next_line += 1
                line_end = len(reproduced) + item.length
                reproduced += data[chunk.start + len(reproduced) : chunk.start + line_end]
                if item.terminated:
                    reproduced += b"\n"
        assert bytes(reproduced) == data[chunk.start : chunk.end]
        assert next_line == chunk.first_line + chunk.line_count
    return out


def assert_same_lines(data: bytes, got: list[tuple[int, bytes | LongLine]]) -> None:
    expected = file_lines(data)
    assert [number for number, _ in got] == list(range(1, len(expected) + 1))
    for (number, item), line in zip(got, expected, strict=True):
        if isinstance(item, LongLine):
            assert item.prefix == line[:LONG_LINE_KEEP] and item.length == len(line), number
        else:
            assert item == line, number


line_strategy = st.one_of(
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"", b"\r", "María|Núñez".encode()]),
    st.integers(min_value=20, max_value=300).map(lambda n: b"x" * n),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(line_strategy, max_size=40),
    final_newline=st.booleans(),
    chunk_size=st.integers(min_value=1, max_value=200),
    block_size=st.integers(min_value=1, max_value=120),
    max_line_bytes=st.integers(min_value=1, max_value=120),
    max_piece=st.integers(min_value=1, max_value=150),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_line_exactly_once_with_its_number(
    lines: list[bytes], final_newline: bool, chunk_size: int, block_size: int, max_line_bytes: int,
    max_piece: int, seed: int,
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    rng = random.Random(seed)
    chunks = plan_chunks(random_pieces(data, rng, max_piece), chunk_size)
    check_plan(data, chunks, chunk_size)
    got = read_all(data, chunks, rng, block_size, max_line_bytes, max_piece)
    assert_same_lines(data, got)


def test_blocks_end_on_line_boundaries_and_are_about_block_size() -> None:
    data = b"".join(b"%d|line\n" % i for i in range(5000))
    blocks = list(iter_line_blocks([data], 1, block_size=1000, max_line_bytes=100, file_start=True))
    assert all(isinstance(b, LineBlock) for b in blocks)
    sizes = [len(b.data) for b in blocks if isinstance(b, LineBlock)]
    assert all(900 < s <= 1000 for s in sizes[:-1]) and sizes[-1] <= 1000
    assert [b.file_start for b in blocks if isinstance(b, LineBlock)] == [True] + [False] * (len(blocks) - 1)


def test_line_longer_than_block_but_not_max_is_one_block() -> None:
    data = b"a\n" + b"b" * 50 + b"\nc\n"
    items = list(iter_line_blocks([data], 7, block_size=10, max_line_bytes=100))
    assert [(i.first_line, i.data) for i in items if isinstance(i, LineBlock)] == [
        (7, b"a\n"), (8, b"b" * 50 + b"\n"), (9, b"c\n")
    ]


def test_long_line_at_file_start_and_unterminated_at_end() -> None:
    data = b"Z" * 40 + b"\nok\n" + b"Y" * 30
    items = list(iter_line_blocks(random_pieces(data, random.Random(3), 7), 1, block_size=8,
                                  max_line_bytes=16, file_start=True))
    assert items == [
        LongLine(1, b"Z" * 40, 40, True),
        LineBlock(b"ok\n", 2, False),  # not at byte 0: the BOM rule must not apply here
        LongLine(3, b"Y" * 30, 30, False),
    ]
    assert sum(len(i.data) if isinstance(i, LineBlock) else i.bytes_covered for i in items) == len(data)


def test_ten_megabyte_line_is_streamed_not_buffered() -> None:
    block_size, max_line_bytes, piece = 64 * 1024, 256 * 1024, 256 * 1024
    long_len = 10 * 1024 * 1024

    def pieces() -> Iterator[bytes]:
        # Produced lazily so the input itself never sits in memory either.
        yield b"before\n"
        chunk = b"L" * piece
        for _ in range(long_len // piece):
            yield chunk
        yield b"\nafter\n"

    tracemalloc.start()
    try:
        items = []
        for item in iter_line_blocks(pieces(), 1, block_size=block_size, max_line_bytes=max_line_bytes):
            if isinstance(item, LineBlock):
                assert len(item.data) <= max_line_bytes + block_size
            items.append(item)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert items == [
        LineBlock(b"before\n", 1, False),
        LongLine(2, b"L" * LONG_LINE_KEEP, long_len, True),
        LineBlock(b"after\n", 3, False),
    ]
    # Input pieces, the reader's buffer (<= 2 blocks + max_line_bytes) and slack: far below 10 MB.
    assert peak < piece + 2 * block_size + max_line_bytes + 512 * 1024, peak


def test_long_lines_inside_one_piece_are_split_out() -> None:
    long_line = bytes(range(256)).replace(b"\n", b"-") * 8  # 2048 bytes: prefix keeps 1024
    data = b"a\n" + long_line + b"\nb\n" + long_line + b"\n"
    items = list(iter_line_blocks([data], 1, block_size=1 << 20, max_line_bytes=1000))
    assert items == [
        LineBlock(b"a\n", 1, False),
        LongLine(2, long_line[:LONG_LINE_KEEP], len(long_line), True),
        LineBlock(b"b\n", 3, False),
        LongLine(4, long_line[:LONG_LINE_KEEP], len(long_line), True),
    ]


def test_reader_rejects_bad_sizes_and_accepts_memoryviews() -> None:
    with pytest.raises(ValueError, match="block_size"):
        list(iter_line_blocks([b"a\n"], 1, block_size=0, max_line_bytes=10))
    items = list(iter_line_blocks([memoryview(b"a\nb"), b"", bytearray(b"c\n")], 5, block_size=4,
                                  max_line_bytes=10))
    assert items == [LineBlock(b"a\n", 5, False), LineBlock(b"bc\n", 6, False)]
    assert list(iter_line_blocks([], 1, block_size=4, max_line_bytes=4)) == []
