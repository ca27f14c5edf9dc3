/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* WKdm: the page compressor of Wilson and Kaplan ("The Case for Compressed
 * Caching in Virtual Memory Systems", USENIX ATC 1999; the WKdm variant of
 * their WK family), written from the published description.
 *
 * Model. A page is 1024 32-bit words, read little-endian whatever the host
 * so that streams are portable. A 16-entry dictionary, all zero at the
 * start, is direct-mapped by a hash of a word's high 22 bits (slot()).
 * Each word w gets a 2-bit tag:
 *   ZERO    w == 0                            no payload
 *   EXACT   dict[slot(w)] == w                4-bit slot index
 *   PARTIAL dict[slot(w)] >> 10 == w >> 10    4-bit slot index, low 10 bits
 *   MISS    otherwise                         the whole word
 * Every tag but ZERO then sets dict[slot] = w (a no-op for EXACT); ZERO
 * leaves the dictionary alone. The decoder keeps the same dictionary: for
 * MISS it recomputes slot() of the word it reads, so the hash is part of
 * the format and may never change.
 *
 * Stream (all integers little-endian):
 *   header   u16 nf, u16 ni, u16 nl: MISS words; EXACT+PARTIAL words
 *            (indices); PARTIAL words (low-bit fields)
 *   misses   nf words, raw
 *   tags     256 bytes: word i's tag in bits 2*(i%4) of byte i/4
 *   indices  ceil(ni/2) bytes: two per byte, the earlier in the low nibble
 *   low bits ceil(nl/3) u32: three 10-bit fields at bits 0, 10, 20
 * Unused nibbles and bits (an odd last nibble, bits 30-31 of every low
 * word, empty fields of the last one) are zero. The largest stream, every
 * word a MISS, is 6 + 4096 + 256 = 4358 bytes, within DMEM__WKDM_BOUND.
 *
 * Invariants the decoder checks before it writes a word: the stream is
 * exactly as long as the header's counts imply (shorter: DMEM_ETRUNC;
 * longer, or counts over 1024: DMEM_ECORRUPT); the tags contain exactly nf
 * MISS, ni - nl EXACT and nl PARTIAL (so the 1024 tags account for every
 * payload byte and no section can be over- or under-read); and padding is
 * zero. The dictionary indices themselves need no check: any 4-bit value
 * names a slot. A stream that passes decodes to exactly one page; the
 * decoder does not insist that the encoder would have chosen the same tags
 * for it (that would tie validity to encoder policy, not to safety).
 *
 * Speed. The encoder makes one pass that classifies each word into small
 * arrays on the stack (tags, indices, low bits), while misses go straight
 * to the output when the caller's buffer can hold the worst case (which is
 * why they come first in the stream); then it packs. ZERO and EXACT words
 * take a branch each; PARTIAL and MISS share a branch-free path. This mix
 * measured fastest on real memory pages: a fully branch-free loop spends
 * more instructions on every word than the mispredictions it avoids (tags
 * follow the layout of the objects in a page and mostly predict well),
 * while the choice between PARTIAL and MISS predicts worst. The decoder
 * switches on the tag.
 */
#include "config.h"

#include <string.h>

#include <diffmem/common.h>

#include "codec_impl.h"
#include "internal.h"
#include "wkdm.h"

#define WORDS (DMEM_PAGE_SIZE / 4u)
#define HDR 6u
#define TAG_BYTES (WORDS / 4u)
#define GROUP 16u /* tags per u32 */
#define LOW_BITS 10u
#define LOW_MASK ((1u << LOW_BITS) - 1u)
#define MAX_STREAM (HDR + 4u * WORDS + TAG_BYTES)

enum { TAG_ZERO = 0, TAG_EXACT = 1, TAG_PARTIAL = 2, TAG_MISS = 3 };

_Static_assert(MAX_STREAM <= DMEM__WKDM_BOUND, "worst case must fit the bound");
_Static_assert(DMEM__WKDM_BOUND <= 0x7fffffff, "stream length must fit an int");

static inline unsigned load_le16(const uint8_t *p)
{
  return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static inline void store_le16(uint8_t *p, unsigned v)
{
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

/* Dictionary slot of a word: a multiplicative hash of its high 22 bits, so
 * that words which can match partially share a slot. Fixed by the format. */
static inline unsigned slot(uint32_t w)
{
  return (unsigned)(((w >> LOW_BITS) * 0x9e3779b1u) >> 28);
}

static inline size_t stream_size(unsigned nf, unsigned ni, unsigned nl)
{
  return HDR + 4u * (size_t)nf + TAG_BYTES + (ni + 1u) / 2u + 4u * ((nl + 2u) / 3u);
}

/* The encoder's classified page: the payload of each section, unpacked.
 * The arrays have slack for the packers' zero padding; low[] holds whole
 * words, of which the packer keeps the low bits. */
struct wk_enc {
  /* 4 * nf bytes. A PARTIAL word also stores at the miss cursor, but
   * below 4 * (WORDS - 1), since it is not a miss itself. */
  uint8_t *miss;
  unsigned nf, ni, nl;
  uint32_t tags[WORDS / GROUP];
  uint8_t idx[WORDS + 1];
  uint32_t low[WORDS + 2];
};

/* Classifies the page. Returns 0, or DMEM_ETOOBIG as soon as the stream
 * is sure to exceed cap. ZERO and EXACT words branch; PARTIAL and MISS,
 * which alternate unpredictably on real pages, share a branch-free path
 * that writes both payloads and advances the cursor that applies. */
static int classify(struct wk_enc *e, const uint8_t *p, size_t cap)
{
  uint32_t dict[16] = {0};
  uint8_t *miss = e->miss, *idx = e->idx;
  uint32_t *low = e->low;
  int check = cap < MAX_STREAM;
  for (unsigned g = 0; g < WORDS / GROUP; g++, p += 4 * GROUP) {
    uint32_t tags = 0;
#pragma GCC unroll 16
    for (unsigned j = 0; j < GROUP; j++) {
      uint32_t w = dmem__load_le32(p + 4 * j);
      if (w == 0)
        continue; /* TAG_ZERO is 0 */
      unsigned h = slot(w);
      uint32_t d = dict[h];
      if (d == w) {
        tags |= (uint32_t)TAG_EXACT << (2 * j);
        *idx++ = (uint8_t)h;
        continue;
      }
      dict[h] = w;
      unsigned m = (d ^ w) > LOW_MASK; /* 1: MISS, 0: PARTIAL */
      tags |= (uint32_t)(TAG_PARTIAL + m) << (2 * j);
      *idx = (uint8_t)h;
      idx += 1 - m;
      *low = w;
      low += 1 - m;
      dmem__store_le32(miss, w);
      miss += 4 * m;
    }
    e->tags[g] = tags;
    if (check && stream_size((unsigned)(miss - e->miss) / 4, (unsigned)(idx - e->idx),
                             (unsigned)(low - e->low)) > cap)
      return DMEM_ETOOBIG;
  }
  e->nf = (unsigned)(miss - e->miss) / 4;
  e->ni = (unsigned)(idx - e->idx);
  e->nl = (unsigned)(low - e->low);
  return 0;
}

/* Writes ni indices, two per byte; returns the end. */
static uint8_t *pack_idx(uint8_t *o, uint8_t *idx, unsigned ni)
{
  idx[ni] = 0;
  for (unsigned i = 0; i < ni; i += 2)
    *o++ = (uint8_t)(idx[i] | idx[i + 1] << 4);
  return o;
}

/* Writes nl low-bit fields, three per word; returns the end. */
static uint8_t *pack_low(uint8_t *o, uint32_t *low, unsigned nl)
{
  low[nl] = low[nl + 1] = 0;
  for (unsigned i = 0; i < nl; i += 3, o += 4)
    dmem__store_le32(o, (low[i] & LOW_MASK) | (low[i + 1] & LOW_MASK) << 10 |
                            (low[i + 2] & LOW_MASK) << 20);
  return o;
}

int dmem__wkdm_compress(uint8_t *out, size_t cap, const void *page)
{
  struct wk_enc e;
  uint8_t spill[4 * WORDS];
  /* With room for the worst case, misses go straight to their place. */
  e.miss = cap >= MAX_STREAM ? out + HDR : spill;
  int rc = classify(&e, page, cap);
  if (rc < 0)
    return rc;
  size_t n = stream_size(e.nf, e.ni, e.nl);
  if (n > cap)
    return DMEM_ETOOBIG;

  store_le16(out, e.nf);
  store_le16(out + 2, e.ni);
  store_le16(out + 4, e.nl);
  uint8_t *o = out + HDR;
  if (e.miss != o)
    memcpy(o, e.miss, 4 * (size_t)e.nf);
  o += 4 * (size_t)e.nf;
  for (unsigned g = 0; g < WORDS / GROUP; g++, o += 4)
    dmem__store_le32(o, e.tags[g]);
  o = pack_idx(o, e.idx, e.ni);
  o = pack_low(o, e.low, e.nl);
  return (int)(o - out);
}

/* Bits set in x. Without a popcount instruction in the target, the
 * builtin is a library call; this SWAR sum is faster than that. */
static inline unsigned popcount64(uint64_t x)
{
#if defined(__POPCNT__)
  return (unsigned)__builtin_popcountll(x);
#else
  x -= (x >> 1) & 0x5555555555555555ull;
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (unsigned)((x * 0x0101010101010101ull) >> 56);
#endif
}

/* Counts the tags of each kind in the tag section: count[k] for k = 1..3. */
static void count_tags(unsigned count[4], const uint8_t *tags)
{
  const uint64_t even = 0x5555555555555555ull;
  unsigned lo = 0, hi = 0, both = 0;
  for (unsigned i = 0; i < TAG_BYTES; i += 8) {
    uint64_t t = (uint64_t)dmem__load_le32(tags + i) | (uint64_t)dmem__load_le32(tags + i + 4)
                                                           << 32;
    lo += popcount64(t & even);
    hi += popcount64(t >> 1 & even);
    both += popcount64(t & t >> 1 & even);
  }
  count[TAG_EXACT] = lo - both;
  count[TAG_PARTIAL] = hi - both;
  count[TAG_MISS] = both;
  count[TAG_ZERO] = WORDS - lo - hi + both;
}

/* Unpacks ni indices; returns nonzero when the padding nibble is not 0. */
static int unpack_idx(uint8_t *idx, const uint8_t *in, unsigned ni)
{
  for (unsigned i = 0; i < ni / 2; i++) {
    idx[2 * i] = in[i] & 15;
    idx[2 * i + 1] = in[i] >> 4;
  }
  if (ni & 1) {
    idx[ni - 1] = in[ni / 2] & 15;
    return in[ni / 2] >> 4;
  }
  return 0;
}

/* Unpacks nl low-bit fields; returns nonzero when a padding bit is set. */
static int unpack_low(uint16_t *low, const uint8_t *in, unsigned nl)
{
  uint32_t pad = 0;
  unsigned words = (nl + 2) / 3;
  for (unsigned i = 0; i < words; i++) {
    uint32_t v = dmem__load_le32(in + 4 * i);
    pad |= v;
    low[3 * i] = (uint16_t)(v & LOW_MASK);
    low[3 * i + 1] = (uint16_t)(v >> 10 & LOW_MASK);
    low[3 * i + 2] = (uint16_t)(v >> 20 & LOW_MASK);
  }
  pad &= 0xc0000000u;
  if (nl % 3)
    pad |= dmem__load_le32(in + 4 * (words - 1)) >> (10 * (nl % 3));
  return pad != 0;
}

/* Rebuilds the words once every count has been checked, so that no cursor
 * can leave its section. */
static void decode_words(uint8_t *out, const uint8_t *miss, const uint8_t *tags, const uint8_t *idx,
                         const uint16_t *low)
{
  uint32_t dict[16] = {0};
  for (unsigned g = 0; g < WORDS / GROUP; g++, out += 4 * GROUP) {
    uint32_t t = dmem__load_le32(tags + 4 * g);
    if (t == 0) { /* sixteen ZERO words: common in real pages */
      memset(out, 0, 4 * GROUP);
      continue;
    }
#pragma GCC unroll 16
    for (unsigned j = 0; j < GROUP; j++) {
      uint32_t w;
      unsigned h;
      switch ((t >> (2 * j)) & 3) {
      case TAG_ZERO:
        w = 0;
        break;
      case TAG_EXACT:
        w = dict[*idx++];
        break;
      case TAG_PARTIAL:
        h = *idx++;
        w = (dict[h] & ~LOW_MASK) | *low++;
        dict[h] = w;
        break;
      default: /* TAG_MISS */
        w = dmem__load_le32(miss);
        miss += 4;
        dict[slot(w)] = w;
        break;
      }
      dmem__store_le32(out + 4 * j, w);
    }
  }
}

int dmem__wkdm_decompress(void *page, const uint8_t *in, size_t len)
{
  if (len < HDR + TAG_BYTES)
    return DMEM_ETRUNC;
  unsigned nf = load_le16(in), ni = load_le16(in + 2), nl = load_le16(in + 4);
  if (nf > WORDS || ni > WORDS || nl > ni || nf + ni > WORDS)
    return DMEM_ECORRUPT;
  size_t need = stream_size(nf, ni, nl);
  if (len < need)
    return DMEM_ETRUNC;
  if (len > need)
    return DMEM_ECORRUPT;

  const uint8_t *miss = in + HDR;
  const uint8_t *tags = miss + 4 * (size_t)nf;
  const uint8_t *pidx = tags + TAG_BYTES;
  const uint8_t *plow = pidx + (ni + 1) / 2;
  unsigned count[4];
  count_tags(count, tags);
  if (count[TAG_MISS] != nf || count[TAG_EXACT] + count[TAG_PARTIAL] != ni ||
      count[TAG_PARTIAL] != nl)
    return DMEM_ECORRUPT;

  uint8_t idx[WORDS];
  uint16_t low[WORDS + 2]; /* + 2: the padding of the last word */
  if (unpack_idx(idx, pidx, ni) || unpack_low(low, plow, nl))
    return DMEM_ECORRUPT;
  decode_words(page, miss, tags, idx, low);
  return 0;
}

/* ---------------------------------------------------------------- entry */

static int wkdm_compress_page(void *state, uint8_t *dst, size_t cap, const void *page)
{
  (void)state;
  return dmem__wkdm_compress(dst, cap, page);
}

static int wkdm_decompress_page(void *state, void *page, const uint8_t *in, size_t len)
{
  (void)state;
  return dmem__wkdm_decompress(page, in, len);
}

/* Stateless: its work memory is on the stack. */
const dmem__codec_impl dmem__codec_wkdm = {
    DMEM_CODEC_WKDM, "wkdm", 1, NULL, NULL, wkdm_compress_page, wkdm_decompress_page};
