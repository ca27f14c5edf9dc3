/**
 * @file diffmem/diffmem.h
 * @brief libdiffmem: saves host memory for virtual machines.
 *
 * libdiffmem finds the memory that virtual machines hold in common and keeps
 * one copy of it. It follows the Difference Engine (Gupta et al., OSDI
 * 2008): identical pages are shared copy-on-write, similar pages are kept
 * as a patch against a reference page, pages left untouched for a while are
 * compressed, and the coldest go to a swap file. Pages that a VM has just
 * read from disk can be indexed at once (XLH), and savings are accounted
 * per VM (Satori).
 *
 * Include this header for everything; the parts are:
 *  - diffmem/common.h  errors, allocator hook, version
 *  - diffmem/version.h compile-time version macros
 *
 * Build against it with `pkg-config --cflags --libs libdiffmem`.
 */
#ifndef DIFFMEM_DIFFMEM_H
#define DIFFMEM_DIFFMEM_H

#include <diffmem/common.h>
#include <diffmem/version.h>

#endif /* DIFFMEM_DIFFMEM_H */
