/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Messages and names for the error codes, generated from DMEM_ERRNO_MAP so
 * that the enum, the names and the messages can never drift apart. */
#include "config.h"

#include <diffmem/common.h>

const char *dmem_strerror(int err)
{
  switch (err) {
  case DMEM_OK:
    return "success";
#define DMEM_ERRNO_MSG_(name, value, msg) \
  case DMEM_E##name:                      \
    return msg;
    DMEM_ERRNO_MAP(DMEM_ERRNO_MSG_)
#undef DMEM_ERRNO_MSG_
  default:
    return "unknown error";
  }
}

const char *dmem_err_name(int err)
{
  switch (err) {
  case DMEM_OK:
    return "DMEM_OK";
#define DMEM_ERRNO_NAME_(name, value, msg) \
  case DMEM_E##name:                       \
    return "DMEM_E" #name;
    DMEM_ERRNO_MAP(DMEM_ERRNO_NAME_)
#undef DMEM_ERRNO_NAME_
  default:
    return "DMEM_E?";
  }
}
