/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Delta encoding: a page written as a patch against a reference page, the
 * third way the Difference Engine (Gupta et al., OSDI 2008, section 3.2)
 * saves memory. The paper used xdelta; these formats are made for memory.
 *
 * A patch opens with a byte that names its format:
 *   0  the word format, below: fast, and the one most pairs get;
 *   2  the moved format, for pages whose content moved within the page: a
 *      varint z follows, the shift s (z = 0, 1, 2, 3 .. means s = 0, -1, 1,
 *      -2 ..; 0 < |s| < 4096), then the word format against the moved
 *      reference, whose byte k is byte k + s of the reference, or zero
 *      where that lies outside it;
 *   1  the LZ-style format of lib/delta_lz.c, written only when the caller
 *      asks for it (DMEM_DELTA_LZ): slower, but it also copies content that
 *      moved by several shifts, fills, and differences that repeat at any
 *      distance.
 * Any other first byte, and a shift of 0 or of 4096 or more either way,
 * is DMEM_ECORRUPT.
 *
 * Model. Let x = page XOR reference, as 64-bit words (memory order, so
 * that byte k of a word is byte 8i + k of the page on any host). In
 * similar pages most words of x are zero, and most of the others repeat:
 * two processes or guests laid out at different addresses hold pointers
 * whose x is the same few values all over the page (on captured heap
 * pages about half of the non-zero words equal one seen lately), or share
 * their high bytes with one.
 *
 * Word format. A token per word that differs, in order, then an end
 * token. The token's top two bits are the words skipped since the last one
 * written (3: a varint follows with the count less 3); its low six bits
 * are the code:
 *   0..15   x is entry `code` of the exact table
 *   16      a byte follows, n << 6 | slot, then n (0..3) bytes: x is entry
 *           `slot` of the high table with its low n bytes replaced
 *   17..52  x is zero but for bytes lo..hi (0 <= lo <= hi <= 7), which
 *           follow; the code is 17 + the pair's rank in (0,0), (0,1) ..
 *           (0,7), (1,1) .. (7,7)
 *   53      a varint r follows: this word and the r after it are zero in
 *           the page (freed or cleared memory, where the reference is
 *           not); the tables are left alone
 *   63      the end: the words left are equal; its skip bits must be 0,
 *           and nothing may follow it
 * Codes 54..62 are DMEM_ECORRUPT. Both tables start zeroed; after each
 * word of codes 16..52 both ends store x in the exact table (16 entries,
 * at (x * K) >> 60) and in the high table (64 entries, at ((x >> 24) * K)
 * >> 58), K = 0x9e3779b97f4a7c15. A word whose x comes out zero is
 * DMEM_ECORRUPT (the encoder never writes one), as is a word past the
 * page end; a patch that stops before its end token is DMEM_ETRUNC.
 *
 * Encoder. One SSE2 pass (64-bit words without it) maps the words that
 * differ; for each, a zero run if the page is zero there, else the
 * shortest of the three codes, one token and at most nine bytes, written
 * whole into a buffer with slack and checked against the cap once a word.
 * The choice between a high-table word and a byte range is made with
 * selects: it is as unpredictable as the data, and a branch there missed
 * half the time on captured pages.
 *
 * The moved format. probe_ref() looks for the page's content elsewhere in
 * the reference: SAMPLES windows of the page, each looked up in an index
 * of the reference's words (some seven thousand instructions in all). Of
 * the shifts found, the one at which most words of the page (every eighth
 * word counted) equal the reference's is tried in the moved format, if
 * more are equal there than unshifted. It runs first on pages where at
 * least MOVED_FIRST words differ at their own offset, and otherwise only
 * on pages the word format cannot fit. On the content detector's pairs of
 * captured memory a third took the moved format and the mean patch went
 * from 807 to 708 bytes, the encode time down by a quarter (fewer words
 * differ against the moved reference, and the LZ-style encoder no longer
 * runs); on the paper's detector's pairs, 456 to 451 bytes at the same
 * speed (bench/README.md).
 *
 * Pages neither word form fits are refused, unless the caller asked for
 * DMEM_DELTA_LZ: then the LZ-style encoder gets a try when the differing
 * words would fit as its literals (which cost no token a word), or when
 * LZ_EVIDENCE of the windows were found elsewhere in the reference or are
 * byte fills (what the word forms cannot express). It costs several times
 * the word encoder and refuses most of the pages it tries, so it is not
 * the default. Nor does it run on pages a word form fits: it would win on
 * some (a difference that repeats every 24 bytes costs it one op and the
 * word format a byte a word), but on captured pairs it made patches only
 * 4% smaller at a third of the speed.
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
#define WORDS (PAGE / 8)
#define FMT_WORD 0
#define FMT_LZ 1
#define FMT_MOVED 2
#define C_PART 16u  /* code: high-table entry with its low bytes replaced */
#define C_RANGE 17u /* codes 17..52: bytes lo..hi of x */
#define C_ZERO 53u  /* code: a run of words that are zero in the page */
#define C_END 63u   /* code: the end of the patch */
#define EXACT_BITS 4u
#define HIGH_BITS 6u
#define SLACK 16u     /* bytes a word may write past the cap before the check */
#define SAMPLES 16u   /* page windows probe_ref() looks for in the reference */
#define MAX_SHIFTS 3u /* shifts of the reference it weighs */
#define EQ_STEP 8u    /* equal_at() counts every EQ_STEP-th word */
/* The bits of those words in a block of the map. */
#define EQ_SAMPLED 0x0101010101010101ull
#define WBITS 10u      /* its index of the reference: 1024 slots, 511 windows */
#define LZ_EVIDENCE 4u /* windows found that make the LZ-style encoder worth a try */
/* Differing words from which the moved format goes first. */
#define MOVED_FIRST (WORDS / 4 * 3)
/* Words that may differ for the LZ-style format to fit them as literals. */
#define LZ_WORDS (DMEM_DELTA_MAX / 8u)

/* The code of bytes (lo, hi) of a word, C_RANGE + its rank among the 36
 * byte ranges (0,0) .. (0,7), (1,1) .. (7,7), as a table indexed by
 * lo * 8 + hi (0 where lo > hi); and back, by rank. */
static const uint8_t range_code[64] = {
    17, 18, 19, 20, 21, 22, 23, 24, 0,  25, 26, 27, 28, 29, 30, 31, 0,  0,  32, 33, 34, 35,
    36, 37, 0,  0,  0,  38, 39, 40, 41, 42, 0,  0,  0,  0,  43, 44, 45, 46, 0,  0,  0,  0,
    0,  47, 48, 49, 0,  0,  0,  0,  0,  0,  50, 51, 0,  0,  0,  0,  0,  0,  0,  52};
static const uint8_t range_lo[36] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                     2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 6, 6, 7};
static const uint8_t range_len[36] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3,
                                      4, 5, 6, 1, 2, 3, 4, 5, 1, 2, 3, 4, 1, 2, 3, 1, 2, 1};

static inline unsigned exact_slot(uint64_t x)
{
  return hash64(x, EXACT_BITS);
}

static inline unsigned high_slot(uint64_t x)
{
  return hash64(x >> 24, HIGH_BITS);
}

/* The tables both ends keep, updated after every word. */
typedef struct tables {
  uint64_t exact[1u << EXACT_BITS];
  uint64_t high[1u << HIGH_BITS];
} tables;

/* ---- Encoder ---- */

#if defined(__SSE2__)
/* Bit k set where word k of the 64 bytes at p and r differ. */
static inline unsigned map8(const uint8_t *p, const uint8_t *r)
{
  const __m128i zero = _mm_setzero_si128();
#define DMEM_Z(k)                                                                                  \
  _mm_cmpeq_epi32(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 16 * (k))),                  \
                                _mm_loadu_si128((const __m128i *)(r + 16 * (k)))),                 \
                  zero)
  /* One byte per 32-bit half, in order; a word is equal where both are. */
  unsigned m = (unsigned)_mm_movemask_epi8(_mm_packs_epi16(_mm_packs_epi32(DMEM_Z(0), DMEM_Z(1)),
                                                           _mm_packs_epi32(DMEM_Z(2), DMEM_Z(3))));
#undef DMEM_Z
  m = ~(m & m >> 1) & 0x5555u;
  m = (m | m >> 1) & 0x3333u;
  m = (m | m >> 2) & 0x0f0fu;
  return (m | m >> 4) & 0xffu;
}
#endif

/* Bit i % 64 of map[i / 64] set where word i of page and ref differ. */
static void word_map(uint64_t map[WORDS / 64], const uint8_t *page, const uint8_t *ref)
{
  for (unsigned b = 0; b < WORDS / 64; b++) {
    uint64_t m = 0;
    const uint8_t *p = page + b * 512, *r = ref + b * 512;
#if defined(__SSE2__)
    for (unsigned k = 0; k < 64; k += 8)
      m |= (uint64_t)map8(p + 8 * k, r + 8 * k) << k;
#else
    for (unsigned k = 0; k < 64; k++)
      m |= (uint64_t)(dmem__load_le64(p + 8 * k) != dmem__load_le64(r + 8 * k)) << k;
#endif
    map[b] = m;
  }
}

/* The token's skip bits, and the varint after it when they say 3. */
static inline uint8_t *put_skip(uint8_t *op, unsigned skip, unsigned code)
{
  op[0] = (uint8_t)((skip < 3 ? skip : 3) << 6 | code);
  return skip < 3 ? op + 1 : put_varint(op + 1, skip - 3);
}

/* Writes a run of n words that are zero in the page (and not all zero in
 * the reference), `skip` zero words of x after the last word written. */
static inline uint8_t *put_zero_run(uint8_t *op, unsigned skip, unsigned n)
{
  return put_varint(put_skip(op, skip, C_ZERO), n - 1);
}

/* Writes one non-zero word x that is not in the exact table (es: its
 * slot there), `skip` words after the last one written, at op (which has
 * SLACK bytes of room); returns the new cursor. */
static inline uint8_t *put_word(uint8_t *op, tables *t, unsigned skip, uint64_t x, unsigned es)
{
  unsigned hs = high_slot(x);
  /* A high-table word or a byte range: which one is as unpredictable as
   * the data, so both are worked out and the choice made with masks (a
   * branch here missed half the time; a compiler turns ?: into one). */
  uint64_t d = x ^ t->high[hs];
  unsigned lo = (unsigned)__builtin_ctzll(x) >> 3;
  unsigned hi = ((unsigned)__builtin_clzll(x) ^ 63) >> 3; /* ^ 63: one bsr on x86 */
  unsigned rn = hi - lo + 1;
  /* the low bytes that differ from the high-table entry */
  unsigned pn = ((((unsigned)__builtin_clzll(d | 1) ^ 63) + 8) >> 3) & (0u - (d != 0));
  int part = (pn <= 3) & (pn + 1 < rn); /* the high bytes match, and 2 + pn < 1 + rn */
  uint64_t all = 0 - (uint64_t)part, r = x >> (8 * lo);
  unsigned sel = (unsigned)all;
  op = put_skip(op, skip, (C_PART & sel) | (range_code[lo * 8 + hi] & ~sel));
  op[0] = (uint8_t)(((pn << 6 | hs) & sel) | ((unsigned)r & ~sel));
  dmem__store_le64(op + 1, (x & all) | (r >> 8 & ~all));
  t->exact[es] = x;
  t->high[hs] = x;
  return op + (((1 + pn) & sel) | (rn & ~sel));
}

/* The bits of block b (words b * 64 ..) at or after word `from`. */
static inline uint64_t from_word(unsigned from, unsigned b)
{
  return from <= b * 64 ? ~0ull : from >= b * 64 + 64 ? 0 : ~0ull << (from - b * 64);
}

/* How many words the map marks, of those whose bits in a block are set in
 * `which`. */
static unsigned map_count(const uint64_t map[WORDS / 64], uint64_t which)
{
  unsigned n = 0;
  for (unsigned b = 0; b < WORDS / 64; b++)
    n += (unsigned)__builtin_popcountll(map[b] & which);
  return n;
}

/* The word format of the words map marks (word_map() of page and ref)
 * into out (cap + SLACK bytes of room), without the header: 0, or
 * DMEM_ETOOBIG as soon as the patch passes cap. */
static int word_encode(size_t *len, uint8_t *out, size_t cap, const uint64_t map[WORDS / 64],
                       const uint8_t *page, const uint8_t *ref)
{
  tables t;
  uint8_t *op = out, *end = out + cap;
  unsigned next = 0; /* the first word not yet covered */
  memset(&t, 0, sizeof t);
  for (unsigned b = 0; b < WORDS / 64; b++) {
    uint64_t m = map[b] & from_word(next, b);
    while (m) {
      unsigned i = b * 64 + (unsigned)__builtin_ctzll(m);
      uint64_t pw = dmem__load_le64(page + 8 * i), x = pw ^ dmem__load_le64(ref + 8 * i);
      unsigned es = exact_slot(x);
      m &= m - 1;
      if (t.exact[es] == x) {
        /* Seen lately: the token alone (its code is the slot). */
        op = put_skip(op, i - next, es);
        next = i + 1;
      } else if (pw == 0) {
        /* The page is zero here, where the reference is not: a run. */
        unsigned n = 1;
        while (i + n < WORDS && dmem__load_le64(page + 8 * (i + n)) == 0)
          n++;
        op = put_zero_run(op, i - next, n);
        next = i + n;
        m &= from_word(next, b);
      } else {
        op = put_word(op, &t, i - next, x, es);
        next = i + 1;
      }
      if (op > end)
        goto too_big;
    }
  }
  *op++ = C_END;
  if (op > end)
    goto too_big;
  *len = (size_t)(op - out);
  return 0;
too_big:
  return DMEM_ETOOBIG;
}

/* How many of every EQ_STEP-th word of the page equal the reference's 8 bytes
 * `shift` bytes further on (words whose counterpart lies outside the page
 * count not): an estimate, enough to weigh shifts against each other. */
static unsigned equal_at(const uint8_t *page, const uint8_t *ref, int shift)
{
  unsigned from = shift < 0 ? ((unsigned)-shift + 7) / 8 : 0;
  unsigned to = shift > 0 ? (PAGE - (unsigned)shift) / 8 : WORDS, n = 0;
  for (unsigned i = (from + EQ_STEP - 1) & ~(EQ_STEP - 1); i < to; i += EQ_STEP)
    n += dmem__load_le64(page + 8 * i) == dmem__load_le64(ref + (long)(8 * i) + shift);
  return n;
}

/* What the reference holds elsewhere: of SAMPLES windows of the page that
 * differ from the reference at their own offset, how many are byte fills
 * or sit elsewhere in the reference (two words equal at any shift: the
 * reference's words at every 8th offset are indexed, and each sample is
 * looked up at eight offsets, so one of them meets an indexed offset
 * whatever the shift). *shift gets, of the shifts the windows found, the
 * one at which most words of the page equal the reference's, if that is
 * more than unshifted, else 0. */
static unsigned probe_ref(int *shift, const uint8_t *page, const uint8_t *ref,
                          const uint64_t map[WORDS / 64])
{
  uint16_t tab[1u << WBITS];
  int seen[MAX_SHIFTS];
  unsigned found = 0, nseen = 0;
  memset(tab, 0, sizeof tab);
  /* Downwards, two words a turn: the lowest offset keeps a slot. */
  for (unsigned n = PAGE / 8 - 1; n >= 2; n -= 2) {
    tab[hash64(dmem__load_le64(ref + 8 * n - 8), WBITS)] = (uint16_t)(8 * n - 7);
    tab[hash64(dmem__load_le64(ref + 8 * n - 16), WBITS)] = (uint16_t)(8 * n - 15);
  }
  tab[hash64(dmem__load_le64(ref), WBITS)] = 1;
  for (unsigned j = 0; j < SAMPLES; j++) {
    unsigned p = j * (PAGE / SAMPLES) + PAGE / SAMPLES / 2;
    uint64_t w = dmem__load_le64(page + p);
    if (w == dmem__load_le64(ref + p))
      continue;
    if (w == (w & 0xff) * 0x0101010101010101ull) {
      found++;
      continue;
    }
    for (unsigned k = 0; k < 8; k++) {
      uint64_t v = dmem__load_le64(page + p + k);
      unsigned q = tab[hash64(v, WBITS)];
      if (q-- && dmem__load_le64(ref + q) == v &&
          dmem__load_le64(ref + q + 8) == dmem__load_le64(page + p + k + 8)) {
        found++;
        int d = (int)q - (int)(p + k);
        unsigned c = 0;
        while (c < nseen && seen[c] != d)
          c++;
        if (c == nseen && d != 0 && nseen < MAX_SHIFTS)
          seen[nseen++] = d;
        break;
      }
    }
  }
  *shift = 0;
  /* Unshifted, from the map: the same words equal_at() counts. */
  unsigned equal = WORDS / EQ_STEP - map_count(map, EQ_SAMPLED);
  for (unsigned c = 0; c < nseen; c++) {
    unsigned n = equal_at(page, ref, seen[c]);
    if (n > equal) {
      equal = n;
      *shift = seen[c];
    }
  }
  return found;
}

/* The reference moved by shift bytes: byte k of out is byte k + shift of
 * ref, or zero where that is outside the page. */
static void shift_ref(uint8_t *out, const uint8_t *ref, int shift)
{
  size_t n = PAGE - (size_t)(shift < 0 ? -shift : shift);
  if (shift > 0) {
    memcpy(out, ref + shift, n);
    memset(out + n, 0, PAGE - n);
  } else {
    memset(out, 0, PAGE - n);
    memcpy(out + PAGE - n, ref, n);
  }
}

/* A patch in out (1 + DMEM_DELTA_MAX + SLACK bytes of room) whose hn
 * header bytes are written: the word format after them, 0 with *len the
 * whole patch's length, or DMEM_ETOOBIG. */
static int headed_encode(size_t *len, uint8_t *out, size_t hn, const uint64_t map[WORDS / 64],
                         const uint8_t *page, const uint8_t *ref)
{
  int rc = word_encode(len, out + hn, DMEM_DELTA_MAX - hn, map, page, ref);
  if (rc == 0)
    *len += hn;
  return rc;
}

/* The word format into out (as headed_encode()), map that of page and ref. */
static int plain_encode(size_t *len, uint8_t *out, const uint64_t map[WORDS / 64],
                        const uint8_t *page, const uint8_t *ref)
{
  out[0] = FMT_WORD;
  return headed_encode(len, out, 1, map, page, ref);
}

/* The moved format into out (as headed_encode()), against ref moved by
 * shift. */
static int moved_encode(size_t *len, uint8_t *out, const uint8_t *page, const uint8_t *ref,
                        int shift)
{
  uint8_t moved[PAGE];
  uint64_t map[WORDS / 64];
  out[0] = FMT_MOVED;
  size_t hn = (size_t)(put_varint(out + 1, zigzag(shift)) - out);
  shift_ref(moved, ref, shift);
  word_map(map, page, moved);
  return headed_encode(len, out, hn, map, page, moved);
}

int dmem_delta_encode_flags(size_t *out_len, void *out, size_t out_cap, const void *page,
                            const void *ref, unsigned flags)
{
  if (!out_len || !out || !page || !ref || (flags & ~DMEM_DELTA_LZ) != 0)
    return DMEM_EINVAL;
  /* Which format is used is decided as if the caller had room for any
   * patch, so that the cap decides only whether the patch is taken. */
  size_t cap = out_cap < DMEM_DELTA_MAX ? out_cap : DMEM_DELTA_MAX, len = 0;
  uint8_t buf[1 + DMEM_DELTA_MAX + SLACK];
  uint64_t map[WORDS / 64];
  word_map(map, page, ref);
  unsigned differ = map_count(map, ~0ull), evidence = 0;
  int moved_first = differ >= MOVED_FIRST, shift = 0;
  int rc = moved_first ? DMEM_ETOOBIG : plain_encode(&len, buf, map, page, ref);
  if (rc != 0) {
    evidence = probe_ref(&shift, page, ref, map);
    if (shift != 0)
      rc = moved_encode(&len, buf, page, ref, shift);
  }
  if (rc != 0 && moved_first)
    rc = plain_encode(&len, buf, map, page, ref);
  if (rc == 0) {
    if (len > cap)
      return DMEM_ETOOBIG;
    memcpy(out, buf, len);
    *out_len = len;
    return 0;
  }
  uint8_t *o = out;
  if (!(flags & DMEM_DELTA_LZ) || cap < 2 || (differ > LZ_WORDS && evidence < LZ_EVIDENCE))
    return DMEM_ETOOBIG;
  /* It writes to out only when it succeeds. */
  if (dmem__delta_lz_encode(&len, o + 1, cap - 1, page, ref) != 0)
    return DMEM_ETOOBIG;
  o[0] = FMT_LZ;
  *out_len = len + 1;
  return 0;
}

int dmem_delta_encode(size_t *out_len, void *out, size_t out_cap, const void *page, const void *ref)
{
  return dmem_delta_encode_flags(out_len, out, out_cap, page, ref, 0);
}

/* ---- Decoder ---- */

/* The word format: page holds a copy of ref; each word XORs x into it. */
static int word_decode(uint8_t *page, const uint8_t *in, size_t n)
{
  const uint8_t *ip = in, *end = in + n;
  tables t;
  unsigned next = 0;
  memset(&t, 0, sizeof t);
  for (;;) {
    if (ip == end)
      return DMEM_ETRUNC;
    unsigned tok = *ip++, code = tok & 63u, skip = tok >> 6;
    if (code == C_END)
      return skip != 0 || ip != end ? DMEM_ECORRUPT : 0;
    if (skip == 3) {
      int rc = get_varint(&skip, &ip, end);
      if (rc != 0)
        return rc;
      skip += 3;
    }
    if (skip >= WORDS - next)
      return DMEM_ECORRUPT; /* a word past the page end */
    unsigned i = next + skip;
    if (code == C_ZERO) {
      unsigned run;
      int rc = get_varint(&run, &ip, end);
      if (rc != 0)
        return rc;
      if (run >= WORDS - i)
        return DMEM_ECORRUPT; /* the run ends past the page */
      memset(page + 8 * i, 0, 8 * (run + 1));
      next = i + run + 1;
      continue;
    }
    uint64_t x;
    if (code < C_PART) {
      x = t.exact[code];
    } else if (code == C_PART) {
      if (ip == end)
        return DMEM_ETRUNC;
      unsigned pn = *ip >> 6, slot = *ip++ & 63u;
      if ((size_t)(end - ip) < pn)
        return DMEM_ETRUNC;
      uint64_t low = 0;
      for (unsigned k = 0; k < pn; k++)
        low |= (uint64_t)ip[k] << (8 * k);
      ip += pn;
      uint64_t mask = pn ? ~0ull >> (64 - 8 * pn) : 0;
      x = (t.high[slot] & ~mask) | low;
    } else if (code < C_RANGE + 36) {
      unsigned r = code - C_RANGE, lo = range_lo[r], rn = range_len[r];
      if ((size_t)(end - ip) < rn)
        return DMEM_ETRUNC;
      x = 0;
      for (unsigned k = 0; k < rn; k++)
        x |= (uint64_t)ip[k] << (8 * (lo + k));
      ip += rn;
    } else {
      return DMEM_ECORRUPT;
    }
    if (x == 0)
      return DMEM_ECORRUPT; /* an empty table entry: the encoder skips zero words */
    dmem__store_le64(page + 8 * i, dmem__load_le64(page + 8 * i) ^ x);
    if (code >= C_PART) {
      t.exact[exact_slot(x)] = x;
      t.high[high_slot(x)] = x;
    }
    next = i + 1;
  }
}

int dmem_delta_decode(void *page, const void *ref, const void *patch, size_t patch_len)
{
  if (!page || !ref || !patch)
    return DMEM_EINVAL;
  const uint8_t *in = patch;
  if (patch_len == 0)
    return DMEM_ETRUNC;
  if (in[0] == FMT_LZ)
    return dmem__delta_lz_decode(page, ref, in + 1, patch_len - 1);
  if (in[0] == FMT_MOVED) {
    const uint8_t *ip = in + 1, *end = in + patch_len;
    unsigned z;
    int rc = get_varint(&z, &ip, end);
    if (rc != 0)
      return rc;
    int shift = unzigzag(z);
    if (shift == 0 || shift <= -(int)PAGE || shift >= (int)PAGE)
      return DMEM_ECORRUPT;
    shift_ref(page, ref, shift);
    return word_decode(page, ip, (size_t)(end - ip));
  }
  if (in[0] != FMT_WORD)
    return DMEM_ECORRUPT;
  memcpy(page, ref, PAGE);
  return word_decode(page, in + 1, patch_len - 1);
}
