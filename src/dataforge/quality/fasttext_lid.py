"""fastText supervised-model inference in numpy, batched: a reader of the binary `.ftz`/`.bin` format and
`predict(k=1, threshold=0)` over many lines at once, written for `lid.176.ftz` (hierarchical softmax, quantized
input, dense output, no word n-grams) but reading any model of that kind.

What fastText does for one line, and what is done here for a batch:

* `Dictionary::getLine`: tokens split at ' ', '\\t', '\\n', '\\v', '\\f', '\\r' and NUL, then the end-of-line token
  `</s>`. A token in the vocabulary contributes its word row and its character n-grams; an unknown one only its
  n-grams; a token starting with `__label__` contributes nothing. Here: split in Arrow, unique tokens by Arrow's
  dictionary encoding, so each distinct token of the batch is looked up and hashed once.
* `computeSubwords`: n-grams of `minn`..`maxn` UTF-8 characters of `<token>`, hashed with FNV-1a over the bytes
  sign-extended from `int8` (fastText's `uint32_t(int8_t(c))`), taken modulo `bucket`, kept only when the pruned
  dictionary of the quantized model has them (`pruneidx`). Here: all n-grams of all new tokens in numpy arrays,
  hashed in `maxn * 4` vector steps.
* `Model::computeHidden`: mean of the (dequantized) input rows. Here: each unique token's rows summed once, then
  one gather per token occurrence and `np.add.reduceat` per line.
* `HierarchicalSoftmaxLoss::predict`: a depth-first search of the Huffman tree over label counts, scores summed
  as `log(p + 1e-5)`, subtrees scoring below the best leaf so far skipped. Here: all 175 inner-node sigmoids of the
  batch in one matrix product, leaf scores level by level, the best leaf by `argmax`.

Exactness. fastText sums in float32 in its own order and calls `expf`; the batched path sums in another order and
uses numpy's float32 `exp`/`log`, so a score may differ in its last bits. Where that could change the answer —
the best two leaves closer than `_RECHECK` in log space, which also covers the DFS's pruning (a branch score can
rise by up to `log(1 + 1e-5)` a level) and its tie rule (the last best leaf in DFS order wins) — the line is
recomputed in fastText's order: rows added one by one, dot products accumulated one term at a time, `expf` as the
correctly rounded float64 `exp`, and the DFS itself with its pruning.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
EOS = "</s>"
LABEL = "__label__"
_FNV_OFFSET = np.uint32(2166136261)
_FNV_PRIME = np.uint32(16777619)
_KSUB = 256  # centroids per sub-quantizer (ProductQuantizer::nbits_ = 8)
_LOSS_HS = 1
_CHUNK = 1024  # lines per tree evaluation: its (351, chunk) float32 arrays stay in cache
# Rows per matrix product: OpenBLAS stays on one thread below m*n*k = 4 * 65536 (`GEMM_MULTITHREAD_THRESHOLD`);
# above it, its threads' spinning costs more CPU time than the product.
_GEMM_ROWS = 64
_TOKENS = 1 << 16  # distinct tokens whose n-grams are hashed at once
# The best two leaves closer than this (log space) are rechecked in fastText's order (see the module docstring).
_RECHECK = 1e-3
# `uint32_t(int8_t(byte))`: bytes >= 0x80 sign-extend into the hash.
_SEXT = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.int32).view(np.uint32)


@dataclass(frozen=True)
class Args:
    """The `Args` block of a fastText model file (only what inference needs is used)."""

    dim: int
    ws: int
    epoch: int
    min_count: int
    neg: int
    word_ngrams: int
    loss: int  # 1 hs, 2 ns, 3 softmax, 4 ova
    model: int  # 1 cbow, 2 skipgram, 3 supervised
    bucket: int
    minn: int
    maxn: int
    lr_update_rate: int
    t: float


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += out.nbytes
        return out

    def cstring(self) -> bytes:
        end = self.data.index(b"\0", self.pos)
        word = self.data[self.pos : end]
        self.pos = end + 1
        return word


def _read_pq(r: _Reader) -> tuple[int, int, int, int, np.ndarray]:
    dim, nsubq, dsub, lastdsub = r.unpack("iiii")
    return dim, nsubq, dsub, lastdsub, r.array("<f4", dim * _KSUB)


def _dequantize(codes: np.ndarray, rows: int, pq: tuple[int, int, int, int, np.ndarray]) -> np.ndarray:
    """Rows of a product-quantized matrix as float32 (`ProductQuantizer::addcode` with alpha 1)."""
    dim, nsubq, dsub, lastdsub, centroids = pq
    codes = codes.reshape(rows, nsubq)
    out = np.empty((rows, dim), dtype=np.float32)
    for m in range(nsubq):
        width = lastdsub if m == nsubq - 1 else dsub
        # `get_centroids`: the last sub-quantizer's centroids are `lastdsub` wide.
        table = centroids[m * _KSUB * dsub : m * _KSUB * dsub + _KSUB * width].reshape(_KSUB, width)
        out[:, m * dsub : m * dsub + width] = table[codes[:, m]]
    return out


def _read_matrix(r: _Reader, quantized: bool) -> np.ndarray:
    """A `DenseMatrix` or `QuantMatrix`, as dense float32 rows (norms applied: `QuantMatrix::addRowToVector`)."""
    if not quantized:
        m, n = r.unpack("qq")
        return r.array("<f4", m * n).reshape(m, n)
    (qnorm,) = r.unpack("?")
    m, n = r.unpack("qq")
    (codesize,) = r.unpack("i")
    codes = r.array("u1", codesize)
    rows = _dequantize(codes, m, _read_pq(r))
    if qnorm:
        norm_codes = r.array("u1", m)
        norms = _read_pq(r)[4][norm_codes]  # a 1-dimensional quantizer: centroid = the norm itself
        # fastText adds `norm * centroid` per element: one float32 product, the same rounding as here.
        rows = rows * norms[:, None]
    return rows


class FastTextModel:
    """A supervised fastText model with hierarchical-softmax loss, loaded for batched top-1 prediction."""

    def __init__(self, path: str | Path) -> None:
        r = _Reader(Path(path).read_bytes())
        magic, version = r.unpack("ii")
        if magic != FASTTEXT_MAGIC or version > FASTTEXT_VERSION:
            raise ValueError(f"{path}: not a fastText model (magic {magic}, version {version})")
        self.args = Args(*r.unpack("iiiiiiiiiiiid"))
        size, self.nwords, self.nlabels = r.unpack("iii")
        (self.ntokens, pruneidx_size) = r.unpack("qq")
        self.words: list[str] = []
        self.counts = np.empty(size, dtype=np.int64)
        self.types = np.empty(size, dtype=np.int8)
        for i in range(size):
            self.words.append(r.cstring().decode("utf-8", errors="surrogateescape"))
            self.counts[i], self.types[i] = r.unpack("qb")
        pairs = r.array("<i4", 2 * max(pruneidx_size, 0)).reshape(-1, 2)
        self.pruneidx = pairs
        (quant_input,) = r.unpack("?")
        self.input = _read_matrix(r, quant_input)
        (qout,) = r.unpack("?")
        self.output = _read_matrix(r, quant_input and qout)
        if r.pos != len(r.data):
            raise ValueError(f"{path}: {len(r.data) - r.pos} bytes after the output matrix")
        if self.args.loss != _LOSS_HS or self.args.word_ngrams > 1:
            raise NotImplementedError("only hierarchical-softmax models without word n-grams are supported")
        self.labels = [w.removeprefix(LABEL) for w in self.words[self.nwords :]]
        self.word2id = {w: i for i, w in enumerate(self.words)}
        # Bucket -> input row, -1 when pruned away (`Dictionary::pushHash`).
        self.bucket_row = np.full(self.args.bucket, -1, dtype=np.int32)
        if pruneidx_size > 0:
            self.bucket_row[pairs[:, 0]] = self.nwords + pairs[:, 1].astype(np.int64)
        elif pruneidx_size < 0:  # not pruned: every bucket has its row
            self.bucket_row[:] = self.nwords + np.arange(self.args.bucket)
        self.eos = self.word2id.get(EOS, -1)
        self._inner_t = np.ascontiguousarray(self.output[: self.nlabels - 1].T)  # inner nodes' rows, (dim, osz - 1)
        self._build_tree(self.counts[self.nwords :])

    # -- hierarchical softmax ---------------------------------------------------------------------------------

    def _build_tree(self, counts: np.ndarray) -> None:
        """`HierarchicalSoftmaxLoss::buildTree`: the Huffman tree over label counts (sorted descending)."""
        osz = len(counts)
        n = 2 * osz - 1
        count = [int(c) for c in counts] + [10**15] * (osz - 1)
        left, right, parent, binary = [-1] * n, [-1] * n, [-1] * n, [False] * n
        leaf, node = osz - 1, osz
        for i in range(osz, n):
            mini = [0, 0]
            for j in range(2):
                if leaf >= 0 and count[leaf] < count[node]:
                    mini[j], leaf = leaf, leaf - 1
                else:
                    mini[j], node = node, node + 1
            left[i], right[i] = mini
            count[i] = count[mini[0]] + count[mini[1]]
            parent[mini[0]] = parent[mini[1]] = i
            binary[mini[1]] = True
        self.osz, self.left, self.right = osz, left, right
        # Leaves in the DFS's visiting order (left subtree first).
        order: list[int] = []
        stack = [n - 1]
        while stack:
            v = stack.pop()
            if left[v] == -1:
                order.append(v)
            else:
                stack += [right[v], left[v]]
        self.leaf_order = np.array(order)
        # Non-root nodes grouped by depth: score(child) = score(parent) + term(parent, side).
        depth = [0] * n
        for v in range(n - 2, -1, -1):
            depth[v] = depth[parent[v]] + 1
        self.depth = max(depth)
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for d in range(1, self.depth + 1):
            nodes = np.array([v for v in range(n) if depth[v] == d])
            terms = np.array([parent[v] - osz + (osz - 1) * binary[v] for v in nodes])
            self.levels.append((nodes, np.array([parent[v] for v in nodes]), terms))

    # -- dictionary ------------------------------------------------------------------------------------------

    def _token_ids(self, tokens: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Input rows of each token, in fastText's order, as CSR: (offsets of len(tokens) + 1, rows)."""
        n = len(tokens)
        toks = tokens.to_pylist()
        get = self.word2id.get
        wid = np.array([get(t, -1) for t in toks], dtype=np.int64)
        skip = np.asarray(pc.starts_with(tokens, LABEL).to_numpy(zero_copy_only=False), dtype=bool)
        if self.eos >= 0:
            skip |= wid == self.eos  # handled by the caller (no n-grams for `</s>`)
        else:
            skip |= np.array([t == EOS for t in toks], dtype=bool)
        has_word = (wid >= 0) & (wid < self.nwords) & ~skip
        owner, rows = self._ngrams(tokens, skip)
        per_token = np.bincount(owner, minlength=n) + has_word
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(per_token, out=offsets[1:])
        out = np.empty(offsets[-1], dtype=np.int64)
        out[offsets[:-1][has_word]] = wid[has_word]
        if len(owner):
            first = np.searchsorted(owner, np.arange(n))
            out[offsets[owner] + has_word[owner] + np.arange(len(owner)) - first[owner]] = rows
        return offsets, out

    def _ngrams(self, tokens: pa.Array, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owning token, input row) of every kept character n-gram of `<token>`, in `computeSubwords` order."""
        a = self.args
        if a.maxn <= 0 or len(tokens) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        if tokens.type != pa.string():
            tokens = tokens.cast(pa.string())
        off = np.frombuffer(tokens.buffers()[1], dtype=np.int32, count=len(tokens) + 1, offset=4 * tokens.offset)
        off = off.astype(np.int64)
        raw = np.frombuffer(tokens.buffers()[2], dtype=np.uint8)[off[0] : off[-1]]
        n = len(tokens)
        lens = np.diff(off)
        woff = off - off[0] + 2 * np.arange(n + 1)  # offsets of "<token>" in the wrapped buffer
        buf = np.empty(int(woff[-1]), dtype=np.uint8)
        buf[woff[:-1]] = ord("<")
        buf[woff[1:] - 1] = ord(">")
        owner_byte = np.repeat(np.arange(n), lens)
        buf[np.arange(len(raw)) + 2 * owner_byte + 1] = raw
        # Character starts (not UTF-8 continuation bytes); the buffer end closes the last character.
        starts = np.flatnonzero((buf & 0xC0) != 0x80)
        first = np.searchsorted(starts, woff)
        chars = np.diff(first)  # characters of each "<token>"
        tok_of = np.repeat(np.arange(n), chars)
        local = np.arange(len(starts)) - first[:-1][tok_of]
        nchars = len(starts)
        char_len = np.diff(np.append(starts, len(buf)))
        sbytes = np.append(_SEXT[buf], np.zeros(4, np.uint32))  # padded: a character has at most 4 bytes
        room = chars[tok_of] - local  # characters from each start to the end of its token
        # FNV-1a is sequential, so the hash of the n-gram at a start is the (n-1)-gram's hash continued over one
        # more character: all starts advance together, one character (up to 4 byte steps) per n.
        h = np.full(nchars, _FNV_OFFSET, dtype=np.uint32)
        hashes = np.empty((nchars, a.maxn - a.minn + 1), dtype=np.uint32)
        for size in range(1, a.maxn + 1):
            c = np.minimum(np.arange(size - 1, nchars + size - 1), nchars - 1)
            clen, cbeg = char_len[c], starts[c]
            for k in range(int(clen.max())):
                stepped = (h ^ sbytes[cbeg + k]) * _FNV_PRIME
                h = stepped if k == 0 else np.where(k < clen, stepped, h)
            if size >= a.minn:
                hashes[:, size - a.minn] = h
        # (character start, n) in row-major order = fastText's loop order: start i, then n = minn..maxn.
        valid = (np.arange(a.minn, a.maxn + 1)[None, :] <= room[:, None]) & ~skip[tok_of][:, None]
        # n-grams per token: sum over n of max(chars - n + 1, 0), none for a skipped token.
        per_token = np.maximum(chars[:, None] - np.arange(a.minn, a.maxn + 1)[None, :] + 1, 0).sum(axis=1)
        owner = np.repeat(np.arange(n), np.where(skip, 0, per_token))
        rows = self.bucket_row[hashes[valid] % np.uint32(a.bucket)]
        keep = rows >= 0
        return owner[keep], rows[keep]

    # -- prediction ------------------------------------------------------------------------------------------

    def predict(self, lines: list[str], recheck: float = _RECHECK) -> tuple[list[str | None], np.ndarray]:
        """Top-1 (label without `__label__`, probability) per line, as fastText's `predict(line + "\\n", 1, 0.0)`.

        `recheck`: lines whose best two leaves are closer than this (log space) are recomputed in fastText's own
        arithmetic order (`inf`: every line).

        The probability is fastText's `exp(score)` (it may exceed 1 by ~1e-5). A line with no input rows at all
        (only possible for a model without `</s>`) gets (None, NaN).
        """
        b = len(lines)
        labels: list[str | None] = [None] * b
        probs = np.full(b, np.nan, dtype=np.float32)
        if b == 0:
            return labels, probs
        joined = "".join(lines)  # one scan per separator below, in C
        if "\n" in joined:  # fastText reads one line: the first newline ends it
            lines = [x.split("\n", 1)[0] for x in lines]
        arr = pa.array(lines, pa.string())
        for sep in ("\0", "\t", "\v", "\f", "\r"):  # NUL and ASCII whitespace separate tokens (`readWord`)
            if sep in joined:
                arr = pc.replace_substring(arr, sep, " ")
        split = pc.split_pattern(arr, " ")
        values = split.flatten()
        per_line = np.asarray(pc.list_value_length(split).to_numpy(zero_copy_only=False), dtype=np.int64)
        line_of = np.repeat(np.arange(b), per_line)
        nonempty = np.asarray(pc.greater(pc.binary_length(values), 0).to_numpy(zero_copy_only=False), dtype=bool)
        values, line_of = values.filter(pa.array(nonempty)), line_of[nonempty]
        encoded = pc.dictionary_encode(values)
        uniq = encoded.dictionary
        occ = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        nu = len(uniq)
        eos_u = uniq.index(EOS).as_py()
        if eos_u >= 0:
            # A literal `</s>` token ends the line for fastText (`if (token == EOS) break;`): drop what follows
            # it; it then stands for the line's own end-of-line token.
            after = np.cumsum(occ == eos_u)
            first_of_line = np.searchsorted(line_of, line_of)
            before = after[first_of_line] - (occ[first_of_line] == eos_u)
            keep = after - before == 0
            occ, line_of = occ[keep], line_of[keep]
        # Each distinct token's rows summed once, in slices of tokens (bounding the n-gram arrays), and `</s>`'s
        # row at index nu.
        tokvec = np.zeros((nu + 1, self.args.dim), dtype=np.float32)
        per_tok = np.zeros(nu + 1, dtype=np.int64)  # input rows behind each
        for lo in range(0, nu, _TOKENS):
            offsets, ids = self._token_ids(uniq.slice(lo, _TOKENS))
            rows = np.diff(offsets)
            nz = np.flatnonzero(rows)
            if len(nz):
                tokvec[lo + nz] = np.add.reduceat(self.input[ids], offsets[nz], axis=0)
            per_tok[lo : lo + len(rows)] = rows
        if self.eos >= 0:
            tokvec[nu], per_tok[nu] = self.input[self.eos], 1
        # Occurrences of each line followed by its `</s>`, so that every line has at least one.
        starts = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(np.bincount(line_of, minlength=b) + 1, out=starts[1:])
        seq = np.full(int(starts[-1]), nu, dtype=np.int64)
        seq[np.arange(len(occ)) + line_of] = occ
        best = np.empty(b, dtype=np.int64)
        score = np.empty(b, dtype=np.float32)
        redo = np.zeros(b, dtype=bool)
        n_rows = np.empty(b, dtype=np.int64)
        for lo in range(0, b, _CHUNK):
            hi = min(lo + _CHUNK, b)
            chunk, bounds = seq[starts[lo] : starts[hi]], starts[lo:hi] - starts[lo]
            hidden = np.add.reduceat(tokvec[chunk], bounds, axis=0)
            n_rows[lo:hi] = np.add.reduceat(per_tok[chunk], bounds)
            # `hidden.mul(1.0 / input.size())`: a float32 multiply by the double reciprocal rounded to float.
            hidden *= (1.0 / np.maximum(n_rows[lo:hi], 1)).astype(np.float32)[:, None]
            best[lo:hi], score[lo:hi], redo[lo:hi] = self._best_leaf(hidden, recheck)
        has = n_rows > 0
        for i in np.flatnonzero(redo & has):
            _, ids = self._token_ids(uniq.take(pa.array(seq[starts[i] : starts[i + 1] - 1])))
            best[i], score[i] = self._exact(np.append(ids, [self.eos] * int(self.eos >= 0)))
        probs[has] = np.exp(score[has].astype(np.float64))  # `std::exp` of a float: expf, correctly rounded
        names = self.labels
        for i in np.flatnonzero(has):
            labels[i] = names[best[i]]
        return labels, probs

    def _best_leaf(self, hidden: np.ndarray, recheck: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best leaf, its score and whether the runner-up is within `recheck`, for a chunk of hidden vectors."""
        osz, lines = self.osz, hidden.shape[0]
        z = np.empty((lines, osz - 1), dtype=np.float32)
        for lo in range(0, lines, _GEMM_ROWS):
            np.matmul(hidden[lo : lo + _GEMM_ROWS], self._inner_t, out=z[lo : lo + _GEMM_ROWS])
        terms = np.empty((2 * (osz - 1), lines), dtype=np.float32)  # left branches, then right ones
        f = terms[osz - 1 :]
        with np.errstate(over="ignore"):  # exp(-z) = inf gives f = 0, as in fastText
            np.exp(np.negative(z.T, out=f), out=f)
        f += np.float32(1.0)
        np.divide(np.float32(1.0), f, out=f)
        np.subtract(np.float32(1.0), f, out=terms[: osz - 1])
        terms += np.float32(1e-5)
        np.log(terms, out=terms)
        scores = np.zeros((2 * osz - 1, lines), dtype=np.float32)
        for nodes, parents, t in self.levels:
            scores[nodes] = scores[parents] + terms[t]
        leaf = scores[:osz]
        # Reductions over axis 0 of a (leaves, lines) array run row by row, vectorised over the lines (argmax and
        # partition over that axis do not).
        top = leaf.max(axis=0)
        is_top = leaf == top
        runner_up = np.where(is_top, np.float32(-np.inf), leaf).max(axis=0)
        best = (is_top * np.arange(osz)[:, None]).max(axis=0)  # ties are rechecked: any of them will do here
        return best, top, (top - runner_up) < recheck

    def _exact(self, line_ids: np.ndarray) -> tuple[int, np.float32]:
        """One line in fastText's own arithmetic order, with its DFS (pruning and tie rule included)."""
        hidden = np.zeros(self.args.dim, dtype=np.float32)
        for i in line_ids:
            hidden += self.input[i]
        hidden *= np.float32(1.0 / len(line_ids))
        w = self.output[: self.osz - 1]
        dot = np.zeros(self.osz - 1, dtype=np.float32)
        for j in range(self.args.dim):
            dot += w[:, j] * hidden[j]
        e = np.exp(-dot.astype(np.float64)).astype(np.float32)  # expf, correctly rounded
        f = (1.0 / (np.float32(1.0) + e).astype(np.float64)).astype(np.float32)
        right = np.log(f.astype(np.float64) + 1e-5).astype(np.float32)
        left = np.log((1.0 - f.astype(np.float64)).astype(np.float32).astype(np.float64) + 1e-5).astype(np.float32)
        floor = np.float32(math.log(1e-5))
        best: list = []  # [score, leaf] of the heap's one entry

        def dfs(node: int, score: np.float32) -> None:
            if score < floor or (best and score < best[0]):
                return
            if self.left[node] == -1:
                best[:] = [score, node]  # equal scores replace: the later leaf wins, as in fastText's heap
                return
            k = node - self.osz
            dfs(self.left[node], np.float32(score + left[k]))
            dfs(self.right[node], np.float32(score + right[k]))

        dfs(2 * self.osz - 2, np.float32(0.0))
        return int(best[1]), best[0]
