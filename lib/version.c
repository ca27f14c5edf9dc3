/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Run-time version of the library, matching diffmem/version.h. */
#include "config.h"

#include <diffmem/common.h>
#include <diffmem/version.h>

const char *dmem_version(void) { return DMEM_VERSION_STRING; }

unsigned dmem_version_number(void) { return DMEM_VERSION_NUMBER; }
