/* Is there a Xen hypervisor to talk to? libxenctrl logs its failures
 * through a xentoollog logger; a small logger of our own keeps the first
 * error as the reason instead of printing it on the caller's stderr. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xenctrl.h>

#include <diffmem/xen.h>

typedef struct capture_logger {
  xentoollog_logger base; /* first, so the callbacks can cast back */
  char *buf;
  size_t len;
} capture_logger;

static void capture_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                             const char *context, const char *format, va_list al)
  __attribute__((format(printf, 5, 0)));

static void capture_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                             const char *context, const char *format, va_list al)
{
  capture_logger *c = (capture_logger *)logger;
  (void)context;
  if (level < XTL_ERROR || c->buf[0] != '\0')
    return;
  int n = vsnprintf(c->buf, c->len, format, al);
  if (n >= 0 && (size_t)n < c->len && errnoval > 0)
    snprintf(c->buf + n, c->len - (size_t)n, ": %s", strerror(errnoval));
}

static void capture_destroy(xentoollog_logger *logger) { (void)logger; }

int dmem_xen_probe(dmem_xen_info *out)
{
  if (!out)
    return DMEM_EINVAL;
  memset(out, 0, sizeof *out);
  out->major = out->minor = -1;

  capture_logger log = {
    .base = {.vmessage = capture_vmessage, .progress = NULL, .destroy = capture_destroy},
    .buf = out->reason,
    .len = sizeof out->reason,
  };
  xc_interface *xch = xc_interface_open(&log.base, &log.base, 0);
  if (!xch) {
    if (out->reason[0] == '\0')
      snprintf(out->reason, sizeof out->reason, "cannot open the Xen control interface: %s",
               strerror(errno));
    return DMEM_ENOTSUP;
  }
  int v = xc_version(xch, XENVER_version, NULL);
  xc_interface_close(xch);
  if (v < 0) {
    snprintf(out->reason, sizeof out->reason, "xc_version failed: %s", strerror(errno));
    return DMEM_ENOTSUP;
  }
  out->major = v >> 16;
  out->minor = v & 0xffff;
  out->reason[0] = '\0';
  return 0;
}
