/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The delta codec's LZ-style format (header byte 1; lib/delta.c says when
 * it is used): for pages whose content moved, or whose differences repeat
 * at a distance that is not a whole word, which the word format cannot
 * express.
 *
 * Model. Let x = page XOR reference, byte by byte. In similar pages x is
 * mostly zero, and where it is not it repeats: two processes or guests
 * laid out at different addresses hold pointers whose x is the same few
 * bytes all over the page. So a patch is LZ77 over x, plus copies of the
 * reference at a shift (content that moved), fills, and literals.
 *
 * Format. A sequence of ops that cover the page from byte 0 to 4095 in
 * order. Each opens with a tag, a varint (7 bits a byte, low first, at
 * most 3 bytes) of ((len - 1) << 3) | kind; the op writes page bytes i of
 * [pos, pos + len):
 *   0 COPY   page[i] = ref[i + shift]
 *   1 SHIFT  varint z follows; shift += zigzag(z) (z = 0,1,2,3.. means
 *            0,-1,1,-2..); then as COPY
 *   2 LIT    len bytes follow, the page's bytes
 *   3 FILL   one byte follows, repeated len times
 *   4 XREP   page[i] = ref[i] ^ page[i - dist[0]] ^ ref[i - dist[0]]
 *   5 XNEW   varint d follows; dist = {d, dist[0], dist[1]}; then XREP
 *   6 XREP1  dist = {dist[1], dist[0], dist[2]}; then XREP
 *   7 XREP2  dist = {dist[2], dist[0], dist[1]}; then XREP
 * shift starts at 0 and dist at {0, 0, 0}: content at its reference offset
 * costs a tag, and a move or difference seen lately no distance.
 *
 * Invariants the decoder checks before it touches a byte: a varint has at
 * most three bytes; an op ends within the page; a copy's source lies in
 * the reference; an XOR copy's dist is 1..pos, so it reads only page bytes
 * already written (in order, as LZ77 does, so overlap is well defined); a
 * literal or fill has its bytes. The ops must end at the page end and the
 * patch with them: stopping short is DMEM_ETRUNC, bytes after the page is
 * covered DMEM_ECORRUPT. A patch that passes writes each byte once.
 *
 * Encoder. Greedy, one pass, two small hash tables on the stack. One SSE2
 * pass (64-bit words without SSE2) first writes x = page XOR reference and
 * a bitmap of its non-zero bytes; from then on equal runs are found by
 * scanning the bitmap, and XOR copies compare x with itself 16 bytes at a
 * time. Equal runs become COPY at shift 0 (runs shorter than GAP_MERGE
 * join the literal). A probe at the first differing byte of a run and at
 * each word boundary in it weighs, by bytes covered less bytes spent: a
 * FILL; XOR copies at the remembered distances (one compare also finds one
 * that starts later in the 8 bytes, taken only if it covers non-zero x);
 * one at the distance to the last word with the same x; a copy at the
 * current shift. An XOR copy of GOOD bytes ends the search: on real pages
 * the time goes to these probes (tens of instructions and a few
 * unpredictable branches per candidate), not to finding equal runs. After
 * FAIL_LOOK fruitless probes with no long equal run between them it also
 * looks the page's window up in a table of the reference (content moved).
 * From DENSE literal bytes on, probes come at every byte, with a skip that
 * grows with misses as in LZ4. Ops go to a buffer on the stack with SLACK
 * bytes past the cap, each written whole (a short literal as one 16-byte
 * copy) and checked once; the encoder gives up (DMEM_ETOOBIG) as soon as
 * the output passes the cap or the pending literal, less the BACK_MAX
 * bytes a match may take back, cannot fit: the answer never depends on the
 * cap, and hopeless pairs cost little.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <diffmem/delta.h>

#include "delta_lz.h"
#include "internal.h"
#include "varint.h"

#define PAGE DMEM_PAGE_SIZE
#define GAP_MERGE 4u /* equal runs shorter than this join the literal */
#define DENSE 24u    /* literal length from which probes come at every byte */
#define XMIN 4u      /* shortest XOR copy taken */
#define XBITS 10u    /* x word table: 1024 slots for 512 words */
#define RBITS 12u    /* reference window table */
#define RSTEP 4u     /* reference offsets indexed */
#define FAIL_LOOK 2u /* failed probes in a row before any shift is looked for */
#define CALM 32u     /* an equal run this long ends a row of failed probes */
#define MISS_STEP 4u /* misses that add one to the skip */
#define BACK_MAX 64u /* most a match grows backwards over a literal */
#define GOOD 16u     /* an XOR copy this long ends the search for others */
#define XPAD 16u     /* zero bytes after x: a match compares 16 at a time */
#define SLACK 32u    /* output bytes past the cap an op may write before the check */

enum { OP_COPY, OP_SHIFT, OP_LIT, OP_FILL, OP_XREP, OP_XNEW, OP_XREP1, OP_XREP2 };
#define NREP 3u /* distances XOR copies remember */

static inline unsigned low_byte(uint64_t x)
{
  return (unsigned)__builtin_ctzll(x) >> 3;
}

static inline unsigned varint_size(unsigned v)
{
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : 3;
}

/* ---- Encoder ---- */

typedef struct enc {
  const uint8_t *page, *ref;
  uint8_t *op, *end;   /* output cursor and limit */
  unsigned pos;        /* page bytes the ops so far cover */
  int shift;           /* copies read the reference at page offset + shift */
  unsigned dist[NREP]; /* XOR copy distances, latest first; 0: none */
  int have_rtab;
  uint64_t nz[PAGE / 64];              /* bit i of word i / 64: x[i] != 0 */
  uint16_t xtab[1u << XBITS];          /* x word hash -> its word offset + 1 */
  uint16_t rtab[1u << RBITS];          /* reference window hash -> offset + 1 */
  _Alignas(16) uint8_t x[PAGE + XPAD]; /* page XOR reference */
  uint8_t buf[DMEM_DELTA_MAX + SLACK]; /* the patch, copied out at the end */
} enc;

/* A candidate op: page bytes [start, start + len). */
typedef struct match {
  unsigned start, len, kind;
  int arg;  /* shift for COPY, dist for XREP */
  int gain; /* bytes covered minus bytes spent */
} match;

static inline uint64_t xword(const enc *e, unsigned p)
{
  return dmem__load_le64(e->x + p);
}

#if !defined(__SSE2__)
/* Bit i set where byte i of v (memory order, as dmem__load_le64 gives) is
 * not 0. */
static inline unsigned nonzero_bytes(uint64_t v)
{
  uint64_t t = (((v & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | v) & 0x8080808080808080ull;
  return (unsigned)(((t >> 7) * 0x0102040810204080ull) >> 56);
}
#endif

/* x = page XOR reference and its map of non-zero bytes, in one pass: the
 * rest of the encoder reads only these (and the page or reference where a
 * fill or a shifted copy needs them). */
static void make_x(enc *e)
{
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (unsigned i = 0; i < PAGE; i += 64) {
    uint64_t same = 0;
    for (unsigned k = 0; k < 64; k += 16) {
      __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(e->page + i + k)),
                                _mm_loadu_si128((const __m128i *)(e->ref + i + k)));
      _mm_store_si128((__m128i *)(e->x + i + k), v);
      same |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) << k;
    }
    e->nz[i / 64] = ~same;
  }
#else
  for (unsigned i = 0; i < PAGE; i += 64) {
    uint64_t m = 0;
    for (unsigned k = 0; k < 64; k += 8) {
      uint64_t a, b;
      memcpy(&a, e->page + i + k, 8);
      memcpy(&b, e->ref + i + k, 8);
      a ^= b;
      memcpy(e->x + i + k, &a, 8);
      m |= (uint64_t)nonzero_bytes(dmem__load_le64(e->x + i + k)) << k;
    }
    e->nz[i / 64] = m;
  }
#endif
  memset(e->x + PAGE, 0, XPAD);
}

/* First byte at or after from where page and reference differ, or PAGE. */
static unsigned next_diff(const enc *e, unsigned from)
{
  unsigned w = from / 64;
  uint64_t m = e->nz[w] & (~0ull << (from & 63u));
  while (!m) {
    if (++w == PAGE / 64)
      return PAGE;
    m = e->nz[w];
  }
  return w * 64 + (unsigned)__builtin_ctzll(m);
}

/* The start of the equal run that ends at p, but not before lo. */
static unsigned after_last_diff(const enc *e, unsigned lo, unsigned p)
{
  while (p > lo) {
    unsigned w = (p - 1) / 64;
    uint64_t m = e->nz[w] & (~0ull >> (63 - ((p - 1) & 63u)));
    if (m) {
      p = w * 64 + 64 - (unsigned)__builtin_clzll(m);
      return p > lo ? p : lo;
    }
    p = w * 64;
  }
  return lo;
}

/* First byte in [from, the next word boundary) where page and reference
 * agree, or that boundary. */
static unsigned next_same_in_word(const enc *e, unsigned from)
{
  uint64_t same = ~e->nz[from / 64] >> (from & 63u);
  unsigned lim = 8 - (from & 7u), k = same ? (unsigned)__builtin_ctzll(same) : 64;
  return from + (k < lim ? k : lim);
}

/* Output goes to e->buf, which has SLACK bytes past the cap: an op is
 * written whole (a short literal as one 16-byte copy) and the cap checked
 * once after it, so no op needs a check per byte. */
static inline void put_tag(enc *e, unsigned to, unsigned kind)
{
  e->op = put_varint(e->op, ((to - e->pos - 1) << 3) | kind);
  e->pos = to;
}

static inline int over_cap(const enc *e)
{
  return e->op > e->end ? DMEM_ETOOBIG : 0;
}

static int emit_lit(enc *e, unsigned to)
{
  unsigned n = to - e->pos, from = e->pos;
  if (n == 0)
    return 0;
  put_tag(e, to, OP_LIT);
  if (n <= 16 && from + 16 <= PAGE)
    memcpy(e->op, e->page + from, 16);
  else if (e->op <= e->end && n <= (size_t)(e->end - e->op))
    memcpy(e->op, e->page + from, n);
  else
    return DMEM_ETOOBIG;
  e->op += n;
  return over_cap(e);
}

/* Copies [pos, to) from the reference at shift s. */
static int emit_copy(enc *e, unsigned to, int s)
{
  if (s == e->shift) {
    put_tag(e, to, OP_COPY);
    return over_cap(e);
  }
  int d = s - e->shift;
  e->shift = s;
  put_tag(e, to, OP_SHIFT);
  e->op = put_varint(e->op, zigzag(d));
  return over_cap(e);
}

/* Writes the literal before m, then m. */
static int emit_match(enc *e, const match *m)
{
  unsigned to = m->start + m->len;
  if (emit_lit(e, m->start) != 0)
    return DMEM_ETOOBIG;
  if (m->kind == OP_COPY)
    return emit_copy(e, to, m->arg);
  if (m->kind == OP_FILL) {
    uint8_t byte = e->page[m->start];
    put_tag(e, to, OP_FILL);
    *e->op++ = byte;
    return over_cap(e);
  }
  /* Which remembered distance, if any, and the move to the front, as
   * selects rather than loops. */
  unsigned d = (unsigned)m->arg, d0 = e->dist[0], d1 = e->dist[1], d2 = e->dist[2];
  unsigned k = d == d0 ? 0 : d == d1 ? 1 : d == d2 ? 2 : 3;
  static const uint8_t kinds[NREP + 1] = {OP_XREP, OP_XREP1, OP_XREP2, OP_XNEW};
  e->dist[0] = d;
  e->dist[1] = k == 0 ? d1 : d0;
  e->dist[2] = k <= 1 ? d2 : d1;
  put_tag(e, to, kinds[k]);
  uint8_t *after = put_varint(e->op, d);
  e->op = k == NREP ? after : e->op;
  return over_cap(e);
}

/* Length of the run where x at p equals x at p - d. Reads up to XPAD
 * bytes past the page (x is padded) and clamps. */
static unsigned xmatch_len(const enc *e, unsigned p, unsigned d)
{
  const uint8_t *a = e->x + p, *b = a - d;
  unsigned n = 0, max = PAGE - p;
#if defined(__SSE2__)
  for (;;) {
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
        _mm_loadu_si128((const __m128i *)(a + n)), _mm_loadu_si128((const __m128i *)(b + n))));
    if (m != 0xffffu) {
      n += (unsigned)__builtin_ctz(~m);
      break;
    }
    if ((n += 16) >= max)
      break;
  }
#else
  for (;;) {
    uint64_t v = dmem__load_le64(a + n) ^ dmem__load_le64(b + n);
    if (v) {
      n += low_byte(v);
      break;
    }
    if ((n += 8) >= max)
      break;
  }
#endif
  return n < max ? n : max;
}

/* Length of the run where the page at p equals the reference at q. */
static unsigned copy_len(const enc *e, unsigned p, unsigned q)
{
  unsigned n = 0;
  for (; p + n + 8 <= PAGE && q + n + 8 <= PAGE; n += 8) {
    uint64_t v = dmem__load_le64(e->page + p + n) ^ dmem__load_le64(e->ref + q + n);
    if (v)
      return n + low_byte(v);
  }
  while (p + n < PAGE && q + n < PAGE && e->page[p + n] == e->ref[q + n])
    n++;
  return n;
}

static void consider(match *best, unsigned p, unsigned len, unsigned kind, int arg, int cost)
{
  int gain = (int)len - cost;
  if (gain > best->gain)
    *best = (match){p, len, kind, arg, gain};
}

/* The x match at distance d from p if it is longer than `beat`, else 0.
 * Most candidates fail, and fail soonest where the match would have to
 * end, so that word is checked first. */
static unsigned xmatch_over(const enc *e, unsigned p, unsigned d, unsigned beat)
{
  if (beat >= 8 && p + beat < PAGE) {
    unsigned t = p + beat - 7;
    if (xword(e, t) != xword(e, t - d))
      return 0;
  }
  unsigned n = xmatch_len(e, p, d);
  return n > beat ? n : 0;
}

/* An XOR copy at distance d that starts at p or, when the first bytes
 * differ, in the rest of p's 8-byte window: one compare shows both, so a
 * pointer whose x differs from an earlier one's in a middle byte still
 * gets its high bytes copied. cost: bytes the op spends besides its tag.
 * Inlined into both call sites: the calls were a tenth of the encoder's
 * instructions. */
static inline __attribute__((always_inline)) void probe_dist(enc *e, unsigned p, unsigned d,
                                                             int cost, match *best)
{
  unsigned beat = (best->len > XMIN - 1 ? best->len : XMIN - 1) + (unsigned)cost;
  if (p + 8 > PAGE) {
    unsigned n = xmatch_len(e, p, d);
    if (n > beat)
      consider(best, p, n, OP_XREP, (int)d, 1 + cost);
    return;
  }
  uint64_t v = xword(e, p) ^ xword(e, p - d);
  unsigned s = p;
  if (v & 0xff) {
    unsigned h = 7 - ((unsigned)__builtin_clzll(v) >> 3); /* last differing byte */
    /* Past h, x all zero: a copy at shift 0 covers that as cheaply and
     * leaves the distances alone. */
    if (h == 7 || (xword(e, p) >> (8 * h) >> 8) == 0)
      return;
    s = p + h + 1;
    cost++; /* the literal before it needs a tag of its own */
  }
  unsigned n = xmatch_over(e, s, d, beat);
  if (n)
    consider(best, s, n, OP_XREP, (int)d, 1 + cost);
}

/* A distance from the table of x words seen: to the last word whose x
 * equals xw, the x at word i (which takes its place). */
static unsigned table_dist(enc *e, unsigned i, uint64_t xw)
{
  uint16_t *slot = &e->xtab[hash64(xw, XBITS)];
  unsigned j = *slot;
  *slot = (uint16_t)(i + 1);
  if (j-- == 0 || j >= i || xword(e, j) != xw)
    return 0;
  for (unsigned k = 0; k < NREP; k++)
    if (e->dist[k] == i - j)
      return 0; /* probed already */
  return i - j;
}

/* XOR copies at p: the remembered distances, then a table's, until one
 * covers GOOD bytes (each candidate costs a few unpredictable branches). */
static void probe_xor(enc *e, unsigned p, match *best)
{
  for (unsigned k = 0; k < NREP && best->len < GOOD; k++)
    if (e->dist[k] && e->dist[k] <= p)
      probe_dist(e, p, e->dist[k], 0, best);
  unsigned i = p & ~7u, d;
  uint64_t xw = xword(e, i);
  if (!xw)
    return;
  if ((d = table_dist(e, i, xw)) != 0 && best->len < GOOD) /* the table learns xw anyway */
    probe_dist(e, p, d, (int)varint_size(d), best);
}

static void build_rtab(enc *e)
{
  memset(e->rtab, 0, sizeof e->rtab);
  /* Downwards, so that the lowest offset wins a slot: offsets 0, RSTEP ..
   * PAGE - 8, three a turn (there are 1023). */
  _Static_assert(((PAGE - 8) / RSTEP + 1) % 3 == 0, "offsets come three a turn");
  for (unsigned t = ((PAGE - 8) / RSTEP + 1) / 3; t-- > 0;) {
    unsigned q = t * 3 * RSTEP;
    e->rtab[hash64(dmem__load_le64(e->ref + q + 2 * RSTEP), RBITS)] = (uint16_t)(q + 2 * RSTEP + 1);
    e->rtab[hash64(dmem__load_le64(e->ref + q + RSTEP), RBITS)] = (uint16_t)(q + RSTEP + 1);
    e->rtab[hash64(dmem__load_le64(e->ref + q), RBITS)] = (uint16_t)(q + 1);
  }
  e->have_rtab = 1;
}

/* Copies of the reference at p: the current shift and, if `windows`, any
 * shift the reference's window table knows. The table holds every RSTEP-th
 * offset, so the page's windows at p .. p + RSTEP - 1 are looked up (one
 * meets an indexed offset whatever the shift), or fewer when the next
 * probe comes sooner. */
static void probe_copy(enc *e, unsigned p, unsigned windows, match *best)
{
  long q = (long)p + e->shift;
  if (e->shift != 0 && q >= 0 && q + 8 <= (long)PAGE &&
      dmem__load_le64(e->ref + q) == dmem__load_le64(e->page + p))
    consider(best, p, copy_len(e, p, (unsigned)q), OP_COPY, e->shift, 1);
  if (!windows || best->gain >= 8)
    return;
  if (!e->have_rtab)
    build_rtab(e);
  for (unsigned k = 0; k < windows && p + k + 8 <= PAGE; k++) {
    uint64_t w = dmem__load_le64(e->page + p + k);
    q = (long)e->rtab[hash64(w, RBITS)] - 1;
    if (q >= 0 && q - (long)(p + k) != e->shift && dmem__load_le64(e->ref + q) == w) {
      consider(best, p + k, copy_len(e, p + k, (unsigned)q), OP_COPY, (int)(q - (long)(p + k)),
               k ? 4 : 3);
      return;
    }
  }
}

/* The best op to start at p (a differing byte); best->gain > 0 if any. */
static void probe(enc *e, unsigned p, int dense, unsigned windows, match *best)
{
  best->gain = 0;
  best->len = 0;
  if (p + 8 <= PAGE) {
    uint64_t w = dmem__load_le64(e->page + p);
    if (w == (w & 0xff) * 0x0101010101010101ull) {
      unsigned n = 8;
      while (p + n < PAGE && e->page[p + n] == e->page[p])
        n++;
      consider(best, p, n, OP_FILL, 0, 2);
    }
  }
  /* Dense probes come at every byte: x words are worth one look each. */
  if (!dense || (p & 7u) == 0)
    probe_xor(e, p, best);
  if (p + 8 <= PAGE)
    probe_copy(e, p, windows, best);
}

/* Grows m backwards over the pending literal while it still holds. */
/* How many bytes before a and b are equal, at most max (a - max and
 * b - max are readable), 8 at a time. */
static unsigned back_len(const uint8_t *a, const uint8_t *b, unsigned max)
{
  unsigned n = 0;
  for (; n + 8 <= max; n += 8) {
    uint64_t v = dmem__load_le64(a - n - 8) ^ dmem__load_le64(b - n - 8);
    if (v)
      return n + ((unsigned)__builtin_clzll(v) >> 3);
  }
  while (n < max && a[-1 - (int)n] == b[-1 - (int)n])
    n++;
  return n;
}

static void extend_back(const enc *e, match *m)
{
  unsigned s = m->start, room = s - e->pos > BACK_MAX ? BACK_MAX : s - e->pos, n;
  if (m->kind == OP_XREP) {
    unsigned d = (unsigned)m->arg;
    n = back_len(e->x + s, e->x + s - d, room < s - d ? room : s - d);
  } else if (m->kind == OP_COPY) {
    unsigned q = (unsigned)((long)s + m->arg);
    n = back_len(e->page + s, e->ref + q, room < q ? room : q);
  } else {
    n = back_len(e->page + s, e->page + s + 1, room); /* a fill: byte before equals byte after */
  }
  m->len += n;
  m->start = s - n;
}

/* Where to probe after a miss at p: in a dense literal, a skip that grows
 * with misses (as LZ4 does); elsewhere the next word or differing run. */
static unsigned next_probe(const enc *e, unsigned p, int dense, unsigned miss)
{
  if (dense) {
    p += 1 + miss / MISS_STEP;
    return p < PAGE ? p : PAGE;
  }
  return next_same_in_word(e, p);
}

static int encode_ops(enc *e)
{
  unsigned p = 0, miss = 0, fails = 0;
  memset(e->xtab, 0, sizeof e->xtab);
  while (p < PAGE) {
    unsigned a = next_diff(e, p);
    if (a - p >= GAP_MERGE || a == PAGE) {
      p = after_last_diff(e, e->pos, p); /* a skip may have landed inside the equal run */
      if (a > p && (emit_lit(e, p) != 0 || emit_copy(e, a, 0) != 0))
        return DMEM_ETOOBIG;
      if (a == PAGE)
        return 0;
      if (a - p >= CALM)
        fails = 0;
    }
    p = a;
    /* The literal [pos, p) costs at least its bytes past BACK_MAX. */
    if (p - e->pos > BACK_MAX && (size_t)(e->end - e->op) < p - e->pos - BACK_MAX)
      return DMEM_ETOOBIG;
    int dense = p - e->pos >= DENSE;
    match m = {0, 0, 0, 0, 0};
    unsigned step = 1 + miss / MISS_STEP; /* to the next dense probe */
    probe(e, p, dense, dense ? (step < RSTEP ? step : RSTEP) : fails >= FAIL_LOOK ? RSTEP : 0, &m);
    if (m.gain <= 0) {
      p = next_probe(e, p, dense, miss);
      miss += (unsigned)dense;
      fails++;
      continue;
    }
    extend_back(e, &m);
    if (emit_match(e, &m) != 0)
      return DMEM_ETOOBIG;
    p = e->pos;
    miss = fails = 0;
  }
  return emit_lit(e, PAGE);
}

int dmem__delta_lz_encode(size_t *out_len, uint8_t *out, size_t cap, const uint8_t *page,
                          const uint8_t *ref)
{
  enc e;
  e.page = page;
  e.ref = ref;
  e.op = e.buf;
  e.end = e.buf + (cap < DMEM_DELTA_MAX ? cap : DMEM_DELTA_MAX);
  e.pos = 0;
  e.shift = 0;
  memset(e.dist, 0, sizeof e.dist);
  e.have_rtab = 0;
  make_x(&e);
  int rc = encode_ops(&e);
  if (rc != 0)
    return rc;
  *out_len = (size_t)(e.op - e.buf);
  memcpy(out, e.buf, *out_len);
  return 0;
}

/* ---- Decoder ---- */

/* page[i] = ref[i] ^ page[i - dist] ^ ref[i - dist] for i in [pos, pos + len). */
static void xor_copy(uint8_t *out, const uint8_t *r, unsigned pos, unsigned len, unsigned dist)
{
  unsigned i = pos, end = pos + len;
  if (dist >= 8) {
    for (; i + 8 <= end; i += 8) {
      uint64_t a, b, c, d;
      memcpy(&a, r + i, 8);
      memcpy(&b, out + i - dist, 8);
      memcpy(&c, r + i - dist, 8);
      d = a ^ b ^ c;
      memcpy(out + i, &d, 8);
    }
  }
  for (; i < end; i++)
    out[i] = r[i] ^ out[i - dist] ^ r[i - dist];
}

typedef struct dec {
  uint8_t *out;
  const uint8_t *ref, *ip, *end;
  unsigned pos, dist[NREP];
  long shift;
} dec;

/* Decodes an XOR copy of kind XREP, XNEW, XREP1 or XREP2. */
static int decode_xor(dec *d, unsigned kind, unsigned len)
{
  unsigned k = kind == OP_XREP ? 0 : kind == OP_XREP1 ? 1 : 2, v;
  if (kind == OP_XNEW) {
    int rc = get_varint(&v, &d->ip, d->end);
    if (rc != 0)
      return rc;
    d->dist[2] = v;
  }
  for (v = d->dist[k]; k > 0; k--)
    d->dist[k] = d->dist[k - 1];
  d->dist[0] = v;
  if (v == 0 || v > d->pos)
    return DMEM_ECORRUPT;
  xor_copy(d->out, d->ref, d->pos, len, v);
  return 0;
}

/* Decodes the op with tag `tag`; len has been checked against the page. */
static int decode_op(dec *d, unsigned tag, unsigned len)
{
  unsigned v;
  int rc;
  switch (tag & 7u) {
  case OP_SHIFT:
    if ((rc = get_varint(&v, &d->ip, d->end)) != 0)
      return rc;
    d->shift += unzigzag(v);
    /* fall through */
  case OP_COPY:
    if ((long)d->pos + d->shift < 0 || (long)d->pos + d->shift + len > (long)PAGE)
      return DMEM_ECORRUPT;
    memcpy(d->out + d->pos, d->ref + d->pos + d->shift, len);
    return 0;
  case OP_LIT:
    if ((size_t)(d->end - d->ip) < len)
      return DMEM_ETRUNC;
    memcpy(d->out + d->pos, d->ip, len);
    d->ip += len;
    return 0;
  case OP_FILL:
    if (d->ip == d->end)
      return DMEM_ETRUNC;
    memset(d->out + d->pos, *d->ip++, len);
    return 0;
  default:
    return decode_xor(d, tag & 7u, len);
  }
}

int dmem__delta_lz_decode(uint8_t *page, const uint8_t *ref, const uint8_t *in, size_t n)
{
  dec d = {page, ref, in, in + n, 0, {0, 0, 0}, 0};
  while (d.pos < PAGE) {
    unsigned tag;
    int rc = get_varint(&tag, &d.ip, d.end);
    if (rc != 0)
      return rc;
    unsigned len = (tag >> 3) + 1;
    if (len > PAGE - d.pos)
      return DMEM_ECORRUPT;
    if ((rc = decode_op(&d, tag, len)) != 0)
      return rc;
    d.pos += len;
  }
  return d.ip == d.end ? 0 : DMEM_ECORRUPT;
}
