/* Delta encoding: a page written as a patch against a reference page, the
 * third way the Difference Engine (Gupta et al., OSDI 2008, section 3.2)
 * saves memory. The paper used xdelta; this format is made for memory.
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
 * Encoder. Greedy, one pass, two small hash tables on the stack. Equal
 * runs are found 8 or 32 bytes at a time and become COPY at shift 0 (runs
 * shorter than GAP_MERGE join the literal). A probe at the first differing
 * byte of a run and at each word boundary in it weighs, by bytes covered
 * less bytes spent: a FILL; XOR copies at the remembered distances (one
 * compare also finds one that starts later in the 8 bytes); one at the
 * distance to the last word with the same x; a copy at the current shift.
 * After FAIL_LOOK fruitless probes with no long equal run between them it
 * also looks the page's window up in a table of the reference (content
 * moved). From DENSE literal bytes on, probes come at every byte, with a
 * skip that grows with misses as in LZ4. Output goes straight to the
 * caller's buffer, and the encoder gives up (DMEM_ETOOBIG) as soon as the
 * pending literal, less the BACK_MAX bytes a match may take back, cannot
 * fit: the answer never depends on the cap, and hopeless pairs cost little.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <diffmem/codec.h>

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

enum { OP_COPY, OP_SHIFT, OP_LIT, OP_FILL, OP_XREP, OP_XNEW, OP_XREP1, OP_XREP2 };
#define NREP 3u /* distances XOR copies remember */

/* Bytes in memory order: byte i of a window is bits 8i..8i+7 on any host. */
static inline uint64_t load64(const uint8_t *p)
{
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline unsigned low_byte(uint64_t x)
{
  return (unsigned)__builtin_ctzll(x) >> 3;
}

/* Index of the lowest zero byte of x, or 8: the lowest flag of the classic
 * has-zero-byte test is always exact (only higher ones can be false). */
static inline unsigned low_zero_byte(uint64_t x)
{
  uint64_t z = (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
  return z ? low_byte(z) : 8;
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
  uint16_t xtab[1u << XBITS]; /* x word hash -> its word offset + 1 */
  uint16_t rtab[1u << RBITS]; /* reference window hash -> offset + 1 */
} enc;

/* A candidate op: page bytes [start, start + len). */
typedef struct match {
  unsigned start, len, kind;
  int arg;  /* shift for COPY, dist for XREP */
  int gain; /* bytes covered minus bytes spent */
} match;

static inline uint64_t xword(const enc *e, unsigned p)
{
  return load64(e->page + p) ^ load64(e->ref + p);
}

static inline unsigned hash64(uint64_t w, unsigned bits)
{
  return (unsigned)((w * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

/* First byte at or after from where page and reference differ, or PAGE. */
static unsigned next_diff(const enc *e, unsigned from)
{
  unsigned i = from & ~7u;
  uint64_t x = xword(e, i) >> (8 * (from & 7u)) << (8 * (from & 7u));
  if (x)
    return i + low_byte(x);
  for (i += 8; i < PAGE && (i & 31u); i += 8)
    if ((x = xword(e, i)) != 0)
      return i + low_byte(x);
  /* Most of a similar page is equal: skip it 32 bytes at a time. */
  for (; i < PAGE; i += 32) {
    uint64_t a = xword(e, i), b = xword(e, i + 8), c = xword(e, i + 16), d = xword(e, i + 24);
    if (a | b | c | d)
      return i + (a ? low_byte(a) : b ? 8 + low_byte(b) : c ? 16 + low_byte(c) : 24 + low_byte(d));
  }
  return PAGE;
}

/* First byte in [from, the next word boundary) where page and reference
 * agree, or that boundary. */
static unsigned next_same_in_word(const enc *e, unsigned from)
{
  unsigned i = from & ~7u;
  /* Bytes below from are made to differ so that they are skipped. */
  uint64_t below = from & 7u ? ~0ull >> (64 - 8 * (from & 7u)) : 0;
  return i + low_zero_byte(xword(e, i) | (below & 0x0101010101010101ull));
}

static int put_varint(enc *e, unsigned v)
{
  if ((size_t)(e->end - e->op) < varint_size(v))
    return DMEM_ETOOBIG;
  for (; v >= 0x80; v >>= 7)
    *e->op++ = (uint8_t)(v | 0x80);
  *e->op++ = (uint8_t)v;
  return 0;
}

static int put_tag(enc *e, unsigned to, unsigned kind)
{
  int rc = put_varint(e, ((to - e->pos - 1) << 3) | kind);
  e->pos = to;
  return rc;
}

static int emit_lit(enc *e, unsigned to)
{
  unsigned n = to - e->pos, from = e->pos;
  if (n == 0)
    return 0;
  if (put_tag(e, to, OP_LIT) != 0 || (size_t)(e->end - e->op) < n)
    return DMEM_ETOOBIG;
  memcpy(e->op, e->page + from, n);
  e->op += n;
  return 0;
}

/* Copies [pos, to) from the reference at shift s. */
static int emit_copy(enc *e, unsigned to, int s)
{
  if (s == e->shift)
    return put_tag(e, to, OP_COPY);
  int d = s - e->shift;
  e->shift = s;
  if (put_tag(e, to, OP_SHIFT) != 0)
    return DMEM_ETOOBIG;
  return put_varint(e, d < 0 ? ((unsigned)-d << 1) - 1 : (unsigned)d << 1);
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
    if (put_tag(e, to, OP_FILL) != 0 || e->op == e->end)
      return DMEM_ETOOBIG;
    *e->op++ = byte;
    return 0;
  }
  unsigned d = (unsigned)m->arg, k = 0;
  while (k < NREP && e->dist[k] != d)
    k++;
  static const uint8_t kinds[NREP] = {OP_XREP, OP_XREP1, OP_XREP2};
  for (unsigned j = k < NREP ? k : NREP - 1; j > 0; j--)
    e->dist[j] = e->dist[j - 1];
  e->dist[0] = d;
  if (put_tag(e, to, k < NREP ? kinds[k] : OP_XNEW) != 0)
    return DMEM_ETOOBIG;
  return k < NREP ? 0 : put_varint(e, d);
}

/* Length of the run where x at p equals x at p - d. */
static unsigned xmatch_len(const enc *e, unsigned p, unsigned d)
{
  unsigned n = 0;
  for (; p + n + 8 <= PAGE; n += 8) {
    uint64_t v = xword(e, p + n) ^ xword(e, p + n - d);
    if (v)
      return n + low_byte(v);
  }
  while (p + n < PAGE &&
         (e->page[p + n] ^ e->ref[p + n]) == (e->page[p + n - d] ^ e->ref[p + n - d]))
    n++;
  return n;
}

/* Length of the run where the page at p equals the reference at q. */
static unsigned copy_len(const enc *e, unsigned p, unsigned q)
{
  unsigned n = 0;
  for (; p + n + 8 <= PAGE && q + n + 8 <= PAGE; n += 8) {
    uint64_t v = load64(e->page + p + n) ^ load64(e->ref + q + n);
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
 * gets its high bytes copied. cost: bytes the op spends besides its tag. */
static void probe_dist(enc *e, unsigned p, unsigned d, int cost, match *best)
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
    if (h == 7)
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

/* XOR copies at p: the remembered distances, then a table's. */
static void probe_xor(enc *e, unsigned p, match *best)
{
  for (unsigned k = 0; k < NREP; k++)
    if (e->dist[k] && e->dist[k] <= p)
      probe_dist(e, p, e->dist[k], 0, best);
  unsigned i = p & ~7u, d;
  uint64_t xw = xword(e, i);
  if (!xw)
    return;
  if ((d = table_dist(e, i, xw)) != 0)
    probe_dist(e, p, d, (int)varint_size(d), best);
}

static void build_rtab(enc *e)
{
  memset(e->rtab, 0, sizeof e->rtab);
  /* Downwards, so that the lowest offset wins a slot. */
  for (unsigned q = (PAGE - 8) & ~(RSTEP - 1);; q -= RSTEP) {
    e->rtab[hash64(load64(e->ref + q), RBITS)] = (uint16_t)(q + 1);
    if (q == 0)
      break;
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
  if (e->shift != 0 && q >= 0 && q + 8 <= (long)PAGE && load64(e->ref + q) == load64(e->page + p))
    consider(best, p, copy_len(e, p, (unsigned)q), OP_COPY, e->shift, 1);
  if (!windows || best->gain >= 8)
    return;
  if (!e->have_rtab)
    build_rtab(e);
  for (unsigned k = 0; k < windows && p + k + 8 <= PAGE; k++) {
    uint64_t w = load64(e->page + p + k);
    q = (long)e->rtab[hash64(w, RBITS)] - 1;
    if (q >= 0 && q - (long)(p + k) != e->shift && load64(e->ref + q) == w) {
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
    uint64_t w = load64(e->page + p);
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
static void extend_back(const enc *e, match *m)
{
  unsigned s = m->start, stop = s - e->pos > BACK_MAX ? s - BACK_MAX : e->pos;
  if (m->kind == OP_XREP) {
    unsigned d = (unsigned)m->arg;
    while (s > stop && s > d &&
           (e->page[s - 1] ^ e->ref[s - 1]) == (e->page[s - 1 - d] ^ e->ref[s - 1 - d]))
      s--;
  } else if (m->kind == OP_COPY) {
    long q = (long)s + m->arg;
    while (s > stop && q > 0 && e->page[s - 1] == e->ref[q - 1])
      s--, q--;
  } else {
    while (s > stop && e->page[s - 1] == e->page[s])
      s--;
  }
  m->len += m->start - s;
  m->start = s;
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
      while (p > e->pos && e->page[p - 1] == e->ref[p - 1])
        p--; /* a skip may have landed inside the equal run */
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

int dmem_delta_encode(size_t *out_len, void *out, size_t out_cap, const void *page, const void *ref)
{
  if (!out_len || !out || !page || !ref)
    return DMEM_EINVAL;
  enc e;
  e.page = page;
  e.ref = ref;
  e.op = out;
  e.end = e.op + (out_cap < DMEM_DELTA_MAX ? out_cap : DMEM_DELTA_MAX);
  e.pos = 0;
  e.shift = 0;
  memset(e.dist, 0, sizeof e.dist);
  e.have_rtab = 0;
  int rc = encode_ops(&e);
  if (rc != 0)
    return rc;
  *out_len = (size_t)(e.op - (uint8_t *)out);
  return 0;
}

/* ---- Decoder ---- */

/* Reads a varint of at most three bytes. */
static int get_varint(unsigned *v, const uint8_t **ip, const uint8_t *end)
{
  const uint8_t *in = *ip;
  unsigned r = 0;
  for (unsigned k = 0; k < 3; k++) {
    if (in == end)
      return DMEM_ETRUNC;
    r |= (unsigned)(*in & 0x7f) << (7 * k);
    if (*in++ < 0x80) {
      *v = r;
      *ip = in;
      return 0;
    }
  }
  return DMEM_ECORRUPT;
}

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
    d->shift += v & 1u ? -(long)(v >> 1) - 1 : (long)(v >> 1);
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

int dmem_delta_decode(void *page, const void *ref, const void *patch, size_t patch_len)
{
  if (!page || !ref || !patch)
    return DMEM_EINVAL;
  dec d = {page, ref, patch, (const uint8_t *)patch + patch_len, 0, {0, 0, 0}, 0};
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
