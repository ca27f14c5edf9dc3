# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# dmem.m4 - small configure helpers of libdiffmem, written for this project.

# AX_CHECK_COMPILE_FLAG_DMEM(FLAG, [IF-YES], [IF-NO])
# Does the C compiler accept FLAG (as an error, not a warning)?
AC_DEFUN([AX_CHECK_COMPILE_FLAG_DMEM], [
  AS_VAR_PUSHDEF([cache], [dmem_cv_cflag_$1])
  AC_CACHE_CHECK([whether $CC accepts $1], [cache], [
    dmem_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS -Werror $1"
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
      [AS_VAR_SET([cache], [yes])], [AS_VAR_SET([cache], [no])])
    CFLAGS=$dmem_save_CFLAGS])
  AS_VAR_IF([cache], [yes], [$2], [$3])
  AS_VAR_POPDEF([cache])
])

# AX_PTHREAD_DMEM: POSIX threads, the one way libdiffmem uses them.
AC_DEFUN([AX_PTHREAD_DMEM], [
  PTHREAD_CFLAGS=-pthread
  PTHREAD_LIBS=-pthread
  dmem_save_CFLAGS=$CFLAGS; CFLAGS="$CFLAGS -pthread"
  AC_MSG_CHECKING([for POSIX threads with -pthread])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <pthread.h>]],
      [[pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER; return pthread_mutex_lock(&m);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no]); AC_MSG_ERROR([POSIX threads are required])])
  CFLAGS=$dmem_save_CFLAGS
  AC_SUBST([PTHREAD_CFLAGS])
  AC_SUBST([PTHREAD_LIBS])
])

# DMEM_OPTIONAL(NAME, DESCRIPTION, DEBIAN-PACKAGE, DETECT)
# DETECT sets have=yes|no. Sets use_NAME (dashes become underscores) to
# yes or no. --enable-NAME turns a missing dependency into an error that
# names the Debian package; the default is to build the part when it can.
AC_DEFUN([DMEM_OPTIONAL], [
  AC_ARG_ENABLE([$1],
    [AS_HELP_STRING([--enable-$1], [build $2 (default: when its dependencies are found)])],
    [], [AS_TR_SH([enable_$1])=auto])
  AS_TR_SH([use_$1])=no
  AS_IF([test "x$AS_TR_SH([enable_$1])" != xno], [
    have=no
    $4
    AS_IF([test "x$have" = xyes], [AS_TR_SH([use_$1])=yes],
      [test "x$AS_TR_SH([enable_$1])" = xyes],
      [AC_MSG_ERROR([--enable-$1: $2 needs the Debian package $3])],
      [AC_MSG_WARN([$2 will not be built: install the Debian package $3 to build it])])
  ])
])
